-- wrk script of .ci/load: one connection per thread (-t N -c N), each
-- sending exactly `quota` requests and then stopping, so every request
-- counted was answered and none is left in flight when wrk ends.
--
-- Arguments (after wrk's `--`): quota, expected status, marker directory,
-- then for uploads a template file and the placeholder it holds. A
-- thread that has its quota of answers writes `<marker dir>/<thread>` and
-- stops; .ci/load ends wrk once every thread has. For uploads each request
-- carries the template with the placeholder (the DICOM SOP Instance UID, in
-- the file meta and in the data set) replaced by a UID of the same length
-- made of the thread and request numbers: every body is a distinct, valid
-- instance, so none is answered as a retry of another.
--
-- Each thread notes when it sent its first request and when its last
-- answer came (CLOCK_MONOTONIC through LuaJIT's ffi); the run's duration is
-- the first send to the last answer over all threads. wrk's own duration
-- would also count the time threads wait to start and to be stopped. The
-- template is read by each thread on its first request, so no thread
-- starts late for the others' reading.
--
-- done() prints one line, `RESULT key=value ...`, for .ci/load to read.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } relay_timespec;
int clock_gettime(int clock, relay_timespec *ts);
]]
local timespec = ffi.new("relay_timespec")

local function now_us()
   ffi.C.clock_gettime(1, timespec) -- CLOCK_MONOTONIC
   return tonumber(timespec.tv_sec) * 1000000 + math.floor(tonumber(timespec.tv_nsec) / 1000)
end

local threads = {}
local next_id = 0

function setup(thread)
   next_id = next_id + 1
   thread:set("id", next_id)
   table.insert(threads, thread)
end

local quota, expected, marker_dir, template, parts, placeholder
local sent, answered, calls = 0, 0, 0
-- Globals, so done() can read them from each thread with thread:get.
good, unexpected, first_us, last_us = 0, 0, 0, 0

function init(args)
   quota = tonumber(args[1])
   expected = tonumber(args[2])
   marker_dir = args[3]
   template = args[4]
   placeholder = args[5]
   if template then
      wrk.method = "POST"
   end
end

local function load_template()
   local file = assert(io.open(template, "rb"))
   local bytes = file:read("*a")
   file:close()
   parts = {}
   local from = 1
   while true do
      local s, e = bytes:find(placeholder, from, true)
      if not s then break end
      table.insert(parts, bytes:sub(from, s - 1))
      from = e + 1
   end
   assert(#parts > 0, "the template does not hold its placeholder")
   table.insert(parts, bytes:sub(from))
end

-- A UID as long as the placeholder: 2.25.<thread><request>, zero-padded.
local function uid(n)
   local digits = #placeholder - 6
   return "2.25.1" .. string.format("%03d%0" .. (digits - 3) .. "d", id, n)
end

function request()
   local body
   if template then
      if not parts then load_template() end
      sent = sent + 1
      body = table.concat(parts, uid(sent))
   end
   calls = calls + 1
   -- wrk calls thread 1's request() once before the run, to check it.
   if first_us == 0 and (id ~= 1 or calls > 1) then first_us = now_us() end
   return wrk.format(nil, nil, nil, body)
end

function response(status)
   answered = answered + 1
   last_us = now_us()
   if status == expected then
      good = good + 1
   else
      unexpected = unexpected + 1
      io.stderr:write(string.format("thread %d: status %d\n", id, status))
   end
   if answered >= quota then
      local marker = assert(io.open(marker_dir .. "/" .. id, "w"))
      marker:close()
      wrk.thread:stop()
   end
end

function done(summary, latency)
   local good_total, unexpected_total, first, last = 0, 0, math.huge, 0
   for _, thread in ipairs(threads) do
      good_total = good_total + thread:get("good")
      unexpected_total = unexpected_total + thread:get("unexpected")
      local f, l = thread:get("first_us"), thread:get("last_us")
      if f > 0 and f < first then first = f end
      if l > last then last = l end
   end
   local e = summary.errors
   io.write(string.format(
      "RESULT requests=%d good=%d unexpected=%d connect=%d read=%d write=%d status=%d timeout=%d " ..
      "duration_us=%d wrk_duration_us=%d bytes=%d p50_us=%d p95_us=%d p99_us=%d max_us=%d mean_us=%.0f\n",
      summary.requests, good_total, unexpected_total, e.connect, e.read, e.write, e.status,
      e.timeout, last - first, summary.duration, summary.bytes, latency:percentile(50),
      latency:percentile(95), latency:percentile(99), latency.max, latency.mean))
end
