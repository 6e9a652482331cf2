-- wrk script: GET /products/{id} over ids 1..rows, random or in turn ("seq"), and a JSON
-- summary on stdout that counts every response whose status is not 2xx.
-- Usage: wrk -t1 -c32 -d5s -s products.lua http://127.0.0.1:PORT -- ROWS [seq]

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  rows = tonumber(args[1]) or 1000
  sequential = args[2] == "seq"
  next_id = 0
  not_2xx = 0
  math.randomseed(os.time())
end

function request()
  local id
  if sequential then
    next_id = next_id % rows + 1
    id = next_id
  else
    id = math.random(rows)
  end
  return wrk.format("GET", "/products/" .. id)
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    not_2xx = not_2xx + 1
  end
end

function done(summary, latency, requests)
  local not_2xx_total = 0
  for _, thread in ipairs(threads) do
    not_2xx_total = not_2xx_total + thread:get("not_2xx")
  end
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "not_2xx": %d, "connect": %d, "read": %d, "write": %d, '
      .. '"status": %d, "timeout": %d, "p50_us": %d, "p99_us": %d, "mean_us": %.1f, "max_us": %d}\n',
    summary.requests, summary.duration, not_2xx_total, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean, latency.max))
end
