-- wrk script: one Open Inference Protocol infer request per call, batch 1, JSON tensors.
-- WIDTH (env) is the model's input width; values cycle so consecutive requests differ.
local width = tonumber(os.getenv("WIDTH") or "8")
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local bodies = {}
for r = 0, 63 do
  local v = {}
  for i = 1, width do v[i] = string.format("%.3f", math.sin(r * 7 + i)) end
  bodies[r] = '{"inputs":[{"name":"input","shape":[1,' .. width .. '],"datatype":"FP32","data":[' ..
    table.concat(v, ",") .. ']}],"outputs":[{"name":"score"}]}'
end
local n = 0
request = function()
  n = (n + 1) % 64
  return wrk.format(nil, nil, nil, bodies[n])
end
response = function(status, headers, body)
  if status ~= 200 then
    io.stderr:write("status " .. status .. ": " .. body .. "\n")
  end
end
