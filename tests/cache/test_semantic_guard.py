"""The guard a semantic hit must pass: details an embedding blurs but that change the answer."""

from __future__ import annotations

import pytest

from llmrelay.cache.semantic import same_specifics


@pytest.mark.parametrize(
    ("stored", "asked"),
    [
        ("What is 2+2?", "What is 2+3?"),
        ("Give me 3 ideas for a party.", "Give me ten ideas for a party."),
        ("Who won the World Cup in 2014?", "Who won the World Cup in 2018?"),
        ("What is the first law of thermodynamics?", "What is the second law of thermodynamics?"),
        ("Find customers who placed an order.", "Find customers who never placed an order."),
        ("Which snacks contain gluten?", "Which snacks don't contain gluten?"),
        ("Convert 5 miles to kilometers.", "Convert 5 kilometers to miles."),
        ("How many grams are in a cup?", "How many ounces are in a cup?"),
        ("Sort a list in ascending order in Python.", "Sort a list in descending order in Python."),
        ("How do I declare an array in Java?", "How do I declare an array in JavaScript?"),
        ("How do I read a file in C?", "How do I read a file in C++?"),
        ("How do I parse JSON in Go?", "How do I parse JSON in Rust?"),
        ("What does `git rebase` do?", "What does `git merge` do?"),
        ("Who is the CEO of Microsoft?", "Who is the CEO of Apple?"),
        ("What happened before World War I?", "What happened after World War I?"),
        ("I need a vegetarian lasagna recipe.", "I need a vegan lasagna recipe."),
        ("Noon in Tokyo is what time in London?", "Noon in London is what time in Tokyo?"),
        ("What was Brazil's GDP in 2010?", "What was Brazil's GDP per capita in 2010?"),
    ],
)
def test_a_different_detail_refuses_the_hit(stored: str, asked: str) -> None:
    """Numbers, negations, units, directions, languages, code words, names, a substituted
    word, traded words or an added qualifier each make it a different question."""
    assert not same_specifics(stored, asked)
    assert not same_specifics(asked, stored)


@pytest.mark.parametrize(
    ("stored", "asked"),
    [
        ("How do I reverse a list in Python?", "What's the way to reverse a Python list?"),
        ("Explain recursion to a five-year-old.", "Explain recursion to a 5 year old."),
        ("What is the largest ocean on Earth?", "Which ocean is the biggest on Earth?"),
        ("What's 15% of 80?", "Calculate 15 percent of 80."),
        ("What does the `git rebase` command do?", "Explain what `git rebase` does."),
        ("How do I write a for loop in Go?", "What's the syntax of a for loop in Go?"),
        ("What's the capital of Canada?", "Canada's capital is which city?"),
        ("Write a limerick about a cat.", "Compose a limerick about a cat."),
        ("How do I exit vim?", "How can I quit the vim editor?"),
    ],
)
def test_the_same_question_reworded_passes(stored: str, asked: str) -> None:
    """Rewording, number words, synonyms of a contrast word and asking verbs are not details."""
    assert same_specifics(stored, asked)
    assert same_specifics(asked, stored)
