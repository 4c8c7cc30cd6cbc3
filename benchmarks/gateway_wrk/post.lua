-- wrk script of the gateway benchmarks: POST one JSON body, report one JSON line.
--
-- Environment: WRK_BODY (the body), WRK_HEADERS ("name: value" lines), WRK_RATE (requests
-- per second for the whole run, 0 for a closed loop). With a rate, delay() hands out send
-- slots spaced 1/rate apart, so the connections together keep that pace (run with -t1).
-- The clock is CLOCK_MONOTONIC through LuaJIT's ffi: wrk's Lua has no wall clock in ms.

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } wrk_timespec;
  int clock_gettime(int clk_id, wrk_timespec *tp);
]]
local ts = ffi.new("wrk_timespec")

local function now_ms()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

wrk.method = "POST"
wrk.body = os.getenv("WRK_BODY") or "{}"
wrk.headers["Content-Type"] = "application/json"
for name, value in string.gmatch(os.getenv("WRK_HEADERS") or "", "([^:\n]+):%s*([^\n]*)") do
  wrk.headers[name] = value
end

local rate = tonumber(os.getenv("WRK_RATE") or "0")
if rate > 0 then
  local interval = 1000 / rate
  local next_slot = nil
  function delay()
    local now = now_ms()
    if next_slot == nil or next_slot < now - interval then
      next_slot = now  -- behind schedule: do not burst to catch up
    end
    local slot = next_slot
    next_slot = slot + interval
    return math.max(0, math.floor(slot - now + 0.5))
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "socket_errors": %d, "non2xx": %d, '
      .. '"p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency.max))
end
