"""The semantic cache: a question asked again in other words gets the stored answer.

Only the last user message is compared by meaning (all-MiniLM-L6-v2, cosine); everything
else must match exactly and is the *context key* (:func:`llmrelay.cache.key.semantic_parts`),
so a search never crosses contexts. A candidate hit is served only when its similarity
reaches the threshold *and* :func:`same_specifics` holds: the deterministic guard for what an
embedding blurs (numbers, quoted words, negations, units, languages, names, swapped or
substituted words). The threshold shipped in ``data/semantic_threshold.json`` is the one
``python -m llmrelay.cache.evaluate`` chooses on the labelled pairs.

A failing store or embedder never fails the caller: ``get`` answers ``None``, ``put`` does
nothing, errors are counted and one warning is logged per outage (logger
``llmrelay.cache``).
"""

from __future__ import annotations

import asyncio
import difflib
import hashlib
import json
import re
import time
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np

from llmrelay.cache.index import ContextIndexes, IndexedEntry
from llmrelay.cache.outage import Outage
from llmrelay.cache.vectors import Entry

if TYPE_CHECKING:
    import numpy.typing as npt

    from llmrelay.cache.embed import Embedder
    from llmrelay.cache.vectors import VectorStore


THRESHOLD_FILE = "semantic_threshold.json"


def _shipped_threshold() -> float:
    text = resources.files("llmrelay.cache").joinpath("data", THRESHOLD_FILE).read_text()
    return float(json.loads(text)["threshold"])


DEFAULT_THRESHOLD = _shipped_threshold()
"""The cosine a candidate needs, as chosen by the evaluation (see ``evaluate.py``)."""

PURGE_EVERY = 256
"""Puts between two purges of expired entries from the store."""


@dataclass(frozen=True, slots=True)
class SemanticHit:
    """A stored answer to a question close enough to the one asked."""

    value: bytes
    similarity: float
    matched_text: str


class SemanticCache:
    """Answers stored by (context key, question) and found again by meaning.

    Owns its store (closed by :meth:`aclose`); the embedder is shared and not closed.
    After a failure the store is left alone for ``retry_after_s`` (lookups miss, puts are
    dropped), so an outage costs one timeout, not one per call. After :meth:`aclose`,
    lookups miss and nothing is stored, so a call still running at shutdown is not failed.
    """

    def __init__(
        self,
        embedder: Embedder,
        store: VectorStore,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        ttl_s: float | None,
        clock: Callable[[], float] = time.time,
        retry_after_s: float = 5.0,
    ) -> None:
        self._embedder = embedder
        self._store = store
        self._threshold = threshold
        self._ttl_s = ttl_s
        self._clock = clock
        self._outage = Outage("semantic cache", clock, retry_after_s)
        self._indexes = ContextIndexes(embedder.dim)
        self._sync_lock = asyncio.Lock()
        self._puts = 0
        self._hits = self._misses = 0
        self._embed_s = self._search_s = 0.0
        self._closed = False

    @property
    def threshold(self) -> float:
        return self._threshold

    async def get(self, context_key: str, text: str) -> SemanticHit | None:
        """The stored answer of the closest question in ``context_key``, if close enough."""
        if self._closed or self._outage.resting():
            self._misses += 1
            return None
        try:
            hit = await self._lookup(context_key, text)
        except Exception as exc:  # a cache outage costs a miss, never the call
            self._outage.failed(exc, "get")
            self._misses += 1
            return None
        self._outage.answered("get")
        if hit is None:
            self._misses += 1
        else:
            self._hits += 1
        return hit

    async def put(
        self, context_key: str, text: str, value: bytes, ttl_s: float | None = None
    ) -> None:
        """Store ``value`` as the answer to ``text`` in ``context_key``; ``ttl_s`` overrides
        the cache's default time to live."""
        if self._closed or self._outage.resting():
            return
        try:
            await self._store_entry(context_key, text, value, ttl_s)
        except Exception as exc:  # a cache outage costs a miss later, never the call
            self._outage.failed(exc, "put")
            return
        self._outage.answered("put")

    def stats(self) -> dict[str, Any]:
        """Counters since construction; ``embed_s`` and ``search_s`` are total seconds."""
        return {
            "hits": self._hits,
            "misses": self._misses,
            "errors": self._outage.errors,
            "entries": len(self._indexes),
            "embed_s": self._embed_s,
            "search_s": self._search_s,
        }

    async def aclose(self) -> None:
        """Close the store; a second call does nothing."""
        if self._closed:
            return
        self._closed = True
        await self._store.aclose()

    async def _lookup(self, context_key: str, text: str) -> SemanticHit | None:
        await self._sync()
        vector = await self._embed(text)
        started = time.perf_counter()
        found = self._indexes.search(context_key, vector)
        self._search_s += time.perf_counter() - started
        if found is None:
            return None
        entry, similarity = found
        if similarity < self._threshold or not same_specifics(entry.text, text):
            return None
        value = await self._store.value(entry.id)
        if value is None:  # expired or evicted in the store before this replica noticed
            self._indexes.remove(entry.id)
            return None
        return SemanticHit(value, similarity, entry.text)

    async def _store_entry(
        self, context_key: str, text: str, value: bytes, ttl_s: float | None
    ) -> None:
        ttl = self._ttl_s if ttl_s is None else ttl_s
        now = self._clock()
        vector = await self._embed(text)
        entry = Entry(
            id=_entry_id(context_key, text),
            context=context_key,
            text=text,
            vector=vector.tobytes(),
            expires=None if ttl is None else now + ttl,
        )
        await self._store.add(entry, value, ttl_s=ttl)
        # Seen at once by this replica; the store's change feed repeats it harmlessly.
        self._indexes.add(IndexedEntry(entry.id, context_key, text, entry.expires), vector)
        self._puts += 1
        if self._puts % PURGE_EVERY == 0:
            await self._store.purge(now)

    async def _sync(self) -> None:
        async with self._sync_lock:
            now = self._clock()
            changes = await self._store.changes(now)
            if changes.reset:
                self._indexes = ContextIndexes(self._embedder.dim)
            for entry in changes.entries:
                vector = np.frombuffer(entry.vector, dtype=np.float32)
                indexed = IndexedEntry(entry.id, entry.context, entry.text, entry.expires)
                self._indexes.add(indexed, vector)
            self._indexes.expire(now)

    async def _embed(self, text: str) -> npt.NDArray[np.float32]:
        started = time.perf_counter()
        vectors = await asyncio.to_thread(self._embedder.embed, [text])
        self._embed_s += time.perf_counter() - started
        vector: npt.NDArray[np.float32] = vectors[0]
        return vector


def _entry_id(context_key: str, text: str) -> str:
    """The same question in the same context is one entry, whoever stores it."""
    return hashlib.sha256(f"{context_key}\0{text}".encode()).hexdigest()[:32]


def _split(words: str) -> list[str]:
    return words.split()


# --- the guard: details a bi-encoder blurs, and that change the answer ---------------------

_NUMBER_WORDS = {
    word: str(n)
    for n, word in enumerate(
        _split("zero one two three four five six seven eight nine ten eleven twelve")
    )
}
_NUMBER_WORDS |= {
    word: str(n)
    for n, word in enumerate(
        _split("_ first second third fourth fifth sixth seventh eighth ninth tenth")
    )
    if n
}

# Words whose sense changes the answer. Synonyms share a sense ("largest", "biggest" → max);
# a word missing from the table is ignored. Both texts must name the same senses, as many
# times each.
_SENSES: dict[str, str] = {}
for _sense, _words in {
    "max": "max maximum largest biggest highest greatest tallest",
    "min": "min minimum smallest lowest",
    "ascending": "ascending increasing",
    "descending": "descending decreasing reverse reversed",
    "increase": "increase upgrade",
    "decrease": "decrease downgrade",
    "before": "before",
    "after": "after",
    "last": "last",
    "best": "best",
    "worst": "worst",
    "on": "enable enabled activate",
    "off": "disable disabled deactivate off",
    "add": "add create insert",
    "delete": "delete drop",
    "install": "install",
    "uninstall": "uninstall",
    "start": "start",
    "stop": "stop",
    "accept": "accept accepting",
    "decline": "decline declining reject refuse",
    "lose": "lose losing",
    "gain": "gain gaining",
    "dynamic": "dynamic dynamically",
    "static": "static statically",
    "mutable": "mutable",
    "immutable": "immutable",
    "sorted": "sorted",
    "unsorted": "unsorted",
    "supervised": "supervised",
    "unsupervised": "unsupervised",
    "cooked": "cooked",
    "uncooked": "uncooked raw",
    "iterative": "iterative iteratively",
    "recursive": "recursive recursively recursion",
    "junior": "junior",
    "senior": "senior",
    "older": "older",
    "younger": "younger",
    "north": "north northern",
    "south": "south southern",
    "east": "east eastern",
    "west": "west western",
    "today": "today",
    "tomorrow": "tomorrow",
    "yesterday": "yesterday",
    "spring": "spring",
    "summer": "summer",
    "autumn": "autumn",
    "winter": "winter",
    "male": "man men boy boys male",
    "female": "woman women girl girls female",
    "celsius": "celsius °c",
    "fahrenheit": "fahrenheit °f",
    "kelvin": "kelvin",
    "mile": "mile miles mph",
    "kilometre": "km kilometer kilometers kilometre kilometres",
    "kilogram": "kg kilo kilos kilogram kilograms",
    "pound": "lb lbs pound pounds",
    "ounce": "oz ounce ounces",
    "gram": "g gram grams",
    "millilitre": "ml milliliter milliliters millilitre millilitres",
    "cup": "cup cups",
    "pint": "pint pints",
    "quart": "quart quarts",
    "gallon": "gallon gallons",
    "teaspoon": "tsp teaspoon teaspoons",
    "tablespoon": "tbsp tablespoon tablespoons",
    "dollar": "$ dollar dollars usd",
    "euro": "€ euro euros eur",
    "seconds": "seconds",
    "minute": "minute minutes",
    "hour": "hour hours hourly",
    "day": "day days daily",
    "week": "week weeks weekly",
    "month": "month months monthly",
    "year": "year years yearly annual annually",
}.items():
    for _word in _split(_words):
        _SENSES[_word] = _sense

_NEGATIONS = frozenset(_split("not no never none nor without cannot unable non"))

# Language names that are also common words ("go", "c", "r") count only after "in", "using"
# or "with", or spelled in a way only the language is ("golang", "c++", "c#").
_LANGUAGES = {
    "python": "python", "javascript": "javascript", "js": "javascript",
    "node.js": "javascript", "typescript": "typescript", "java": "java", "c++": "c++",
    "cpp": "c++", "c#": "c#", "csharp": "c#", "golang": "go", "rust": "rust", "ruby": "ruby",
    "php": "php", "kotlin": "kotlin", "swift": "swift", "scala": "scala",
    "haskell": "haskell", "perl": "perl", "lua": "lua", "bash": "bash", "shell": "bash",
    "powershell": "powershell", "elixir": "elixir", "dart": "dart", "julia": "julia",
    "sql": "sql", "matlab": "matlab", "fortran": "fortran", "cobol": "cobol",
}  # fmt: skip
_AMBIGUOUS_LANGUAGE = re.compile(r"\b(?:in|using|with)\s+(go|c|r)\b(?![+#])", re.IGNORECASE)

_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_QUOTED = re.compile(r"`([^`]+)`|(?<!\w)'([^']+)'(?!\w)|\"([^\"]+)\"|“([^”]+)”")
_CODE_WORD = re.compile(
    r"\b[A-Za-z_]\w*_\w+\b"  # snake_case
    r"|\b[a-z]+[A-Z]\w*\b"  # camelCase
    r"|\b\w+\([^)]*\)"  # call(x)
    r"|(?<![\w.])\.\w+\b"  # .txt
)
_TOKEN = re.compile(r"[\w'+#.°$€-]*[\w+#$€]", re.IGNORECASE)
_WORD = re.compile(r"[^\W\d_][\w'+#.-]*[\w+#]|[^\W\d_]|[$€]|°[cf]", re.IGNORECASE)


def same_specifics(stored: str, query: str) -> bool:
    """Whether two texts agree on the details a sentence embedding blurs but that change the
    answer: the numbers, the quoted or code words, the negations, the contrast words
    (units, max/min, before/after, ...), the programming languages and the proper names;
    and whether the content words are one word substituted ("vegetarian" / "vegan"), two
    words traded, a direction reversed ("X to Y") or a qualifier added ("GDP per capita").

    A semantic hit is served only when this holds. Deterministic and cheap (a few regular
    expressions), so it is applied to every candidate; it errs on the side of a miss.
    """
    a, b = _Specifics(stored), _Specifics(query)
    return (
        a.numbers == b.numbers
        and a.quoted == b.quoted
        and a.negations == b.negations
        and a.senses == b.senses
        and a.languages == b.languages
        and a.names <= b.words
        and b.names <= a.words
        and not (a.directions & {(y, x) for x, y in b.directions})
        and not _minimal_pair(a.content, b.content)
        and not _transposed(a.content, b.content)
        and not _narrowed(a.content, b.content)
    )


class _Specifics:
    __slots__ = (
        "content",
        "directions",
        "languages",
        "names",
        "negations",
        "numbers",
        "quoted",
        "senses",
        "words",
    )

    def __init__(self, text: str) -> None:
        text = unicodedata.normalize("NFKC", text).replace("\u2019", "'")
        quoted = [next(g for g in m.groups() if g is not None) for m in _QUOTED.finditer(text)]
        self.quoted = Counter(q.strip().casefold() for q in quoted)
        self.quoted.update(m.group().casefold() for m in _CODE_WORD.finditer(text))
        lower = [_bare(t).casefold() for t in _TOKEN.findall(text.replace("n't", " not"))]
        self.words = frozenset(lower)
        self.content = [w for w in lower if w not in _FRAME]
        self.directions = {
            (self.content[i - 1], self.content[i + 1])
            for i in range(1, len(self.content) - 1)
            if self.content[i] in ("to", "into")
        }
        self.content = [w for w in self.content if w not in ("to", "into")]
        self.numbers = Counter(n.replace(",", "") for n in _NUMBER.findall(text))
        # "five-year-old", "non-leap": the parts of a hyphenated word count one by one.
        parts = [part for w in lower for part in w.split("-") if part]
        self.numbers.update(_NUMBER_WORDS[p] for p in parts if p in _NUMBER_WORDS)
        self.negations = sum(1 for p in parts if p in _NEGATIONS)
        self.senses = Counter(_SENSES[p] for p in parts if p in _SENSES)
        self.languages = {_LANGUAGES[w] for w in lower if w in _LANGUAGES}
        self.languages |= {
            "go" if m.group(1).casefold() == "go" else m.group(1)  # "C", "R": as written
            for m in _AMBIGUOUS_LANGUAGE.finditer(text)
            if m.group(1).casefold() == "go" or m.group(1).isupper()
        }
        self.names = frozenset(
            _bare(m.group()).casefold()
            for m in _WORD.finditer(text)
            if m.group()[0].isupper() and m.group() != "I" and not _starts_sentence(text, m.start())
        )


def _bare(token: str) -> str:
    """A token without a possessive "'s" or a trailing dot ("Node.js" keeps its inner dot)."""
    token = token.rstrip(".")
    return token[:-2] if token.endswith("'s") else token


def _starts_sentence(text: str, start: int) -> bool:
    before = text[:start].rstrip()
    return not before or before[-1] in ".?!:;"


# Words that frame a request without choosing its answer: function words, and the ways of
# asking ("write", "explain", "what's the syntax for"). "to" and "into" are kept until the
# directions ("X to Y") are read.
_FRAME = frozenset(
    _split(
        """a an the of in on for with by at from as is are was were be been do does did done i
    i'm me my you your we our it it's its this that these those there what what's which who
    whom whose when where why how how's can could should would will shall may might must
    please and or vs versus about any some just also then than so if 's
    have has had whether that not
    write compose create make give get show tell explain describe define suggest
    recommend draft generate provide help fix correct need want way steps syntax command
    translate say summarize summary calculate compute
    formula simple simply briefly short brief quick quickly"""
    )
)


def _minimal_pair(a: list[str], b: list[str]) -> bool:
    """Whether two word lists are the same frame with one slot filled differently ("a
    vegetarian recipe" / "a vegan recipe"): such prompts look alike to an embedding but ask
    about different things. Inflections of one word ("walk", "walked") do not count."""
    ops = [
        op
        for op in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes()
        if op[0] != "equal"
    ]
    if len(ops) != 1 or ops[0][0] != "replace":
        return False
    _, i1, i2, j1, j2 = ops[0]
    if i2 - i1 > 2 or j2 - j1 > 2 or len(a) - (i2 - i1) < 1:
        return False
    old, new = " ".join(a[i1:i2]), " ".join(b[j1:j2])
    return not (
        old.startswith(new)
        or new.startswith(old)
        or difflib.SequenceMatcher(a=old, b=new).ratio() >= 0.8
    )


def _narrowed(a: list[str], b: list[str]) -> bool:
    """Whether one text is the other with a qualifier of two or more words added in one
    place ("Brazil's GDP" / "Brazil's GDP per capita"): a narrower question. A single added
    word is as often a rewording ("the plural form of")."""
    ops = [
        op
        for op in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes()
        if op[0] != "equal"
    ]
    if len(ops) != 1 or ops[0][0] not in ("insert", "delete"):
        return False
    _, i1, i2, j1, j2 = ops[0]
    return max(i2 - i1, j2 - j1) >= 2 and min(len(a), len(b)) >= 2


def _transposed(a: list[str], b: list[str]) -> bool:
    """Whether two word lists are the same frame with two words traded ("noon in Tokyo ...
    in London" / "noon in London ... in Tokyo"). At least two words around must agree, so a
    reworded short question ("who discovered X" / "X was discovered by whom") does not
    count."""
    if len(a) != len(b) or len(a) < 4:
        return False
    differ = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
    if len(differ) != 2:
        return False
    i, j = differ
    return a[i] == b[j] and a[j] == b[i]


__all__ = [
    "DEFAULT_THRESHOLD",
    "SemanticCache",
    "SemanticHit",
    "same_specifics",
]
