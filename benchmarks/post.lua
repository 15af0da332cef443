-- wrk script for `make bench`: POST the file named by $BENCH_BODY (a V2 inference request, JSON
-- or JSON header + binary tensors) to the URL given to wrk, count every answer that is not 200
-- (a fast error path must never pass for throughput), and print one machine-readable line.
--   BENCH_BODY=body.json [BENCH_CONTENT_TYPE=...] [BENCH_HEADER_LENGTH=N] \
--     wrk -t1 -c8 -d5s --latency -s benchmarks/post.lua http://127.0.0.1:8000/v2/models/M/infer
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
  wrk.method = "POST"
  wrk.body = f:read("*a")
  f:close()
  wrk.headers["Content-Type"] = os.getenv("BENCH_CONTENT_TYPE") or "application/json"
  local header_length = os.getenv("BENCH_HEADER_LENGTH")
  if header_length and header_length ~= "" then
    wrk.headers["Inference-Header-Content-Length"] = header_length
  end
  non200 = 0
end

function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
  end
end

function done(summary, latency, requests)
  local total_non200 = 0
  for _, t in ipairs(threads) do
    total_non200 = total_non200 + t:get("non200")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "non200": %d, "connect": %d, "read": %d, '
      .. '"write": %d, "timeout": %d, "p50_us": %.1f, "p90_us": %.1f, "p99_us": %.1f, '
      .. '"max_us": %.1f}\n',
    summary.requests, summary.duration, total_non200, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max
  ))
end
