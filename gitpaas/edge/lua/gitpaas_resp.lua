-- A tiny Redis (RESP2) client on nginx cosockets: connect, command, read a reply.
-- Debian ships no lua-resty-redis; gitpaas needs EVAL, GET, MULTI and SUBSCRIBE only.
local tcp = ngx.socket.tcp
local concat, tostring, tonumber, sub, byte = table.concat, tostring, tonumber, string.sub, string.byte

local M = {}

local function encode(args)
  local out = {"*", #args, "\r\n"}
  for i = 1, #args do
    local a = tostring(args[i])
    out[#out + 1] = "$"
    out[#out + 1] = #a
    out[#out + 1] = "\r\n"
    out[#out + 1] = a
    out[#out + 1] = "\r\n"
  end
  return concat(out)
end
M.encode = encode

-- One reply: value, or nil + error ("redis: ..." for an error reply).
local function read_reply(sock)
  local line, err = sock:receive("*l")
  if not line then return nil, err end
  local kind, rest = byte(line, 1), sub(line, 2)
  if kind == 43 then return rest end                       -- '+'
  if kind == 45 then return false, "redis: " .. rest end   -- '-'
  if kind == 58 then return tonumber(rest) end             -- ':'
  if kind == 36 then                                       -- '$'
    local n = tonumber(rest)
    if n < 0 then return ngx.null end
    local data, e = sock:receive(n + 2)
    if not data then return nil, e end
    return sub(data, 1, n)
  end
  if kind == 42 then                                       -- '*'
    local n = tonumber(rest)
    if n < 0 then return ngx.null end
    local arr = {}
    for i = 1, n do
      local v, e = read_reply(sock)
      if v == nil then return nil, e end
      if v == false then arr[i] = {err = e} else arr[i] = v end
    end
    return arr
  end
  return nil, "bad reply: " .. line
end
M.read_reply = read_reply

-- A connection from the cosocket pool, authenticated and on the right database.
function M.connect(conf, timeout_ms)
  local sock = tcp()
  sock:settimeout(timeout_ms or 500)
  local ok, err = sock:connect(conf.redis_host, conf.redis_port,
                               {pool = "gitpaas_redis_" .. conf.redis_host .. ":" .. conf.redis_port .. "/" .. conf.redis_db})
  if not ok then return nil, err end
  if sock:getreusedtimes() == 0 then
    local setup = {}
    if conf.redis_password ~= "" then
      setup[#setup + 1] = conf.redis_user ~= "" and {"AUTH", conf.redis_user, conf.redis_password}
                          or {"AUTH", conf.redis_password}
    end
    if conf.redis_db ~= 0 then setup[#setup + 1] = {"SELECT", conf.redis_db} end
    for _, cmd in ipairs(setup) do
      sock:send(encode(cmd))
      local v, e = read_reply(sock)
      if not v then sock:close() return nil, e end
    end
  end
  return sock
end

-- Run one command on a pooled connection; the connection goes back to the pool.
function M.call(conf, args, timeout_ms)
  local sock, err = M.connect(conf, timeout_ms)
  if not sock then return nil, err end
  local ok, e = sock:send(encode(args))
  if not ok then sock:close() return nil, e end
  local v, e2 = read_reply(sock)
  if v == nil then sock:close() return nil, e2 end
  sock:setkeepalive(30000, 32)
  if v == false then return nil, e2 end
  return v
end

-- Several commands pipelined on one connection; returns the list of replies.
function M.pipeline(conf, commands, timeout_ms)
  local sock, err = M.connect(conf, timeout_ms)
  if not sock then return nil, err end
  local parts = {}
  for i, c in ipairs(commands) do parts[i] = encode(c) end
  local ok, e = sock:send(concat(parts))
  if not ok then sock:close() return nil, e end
  local out = {}
  for i = 1, #commands do
    local v, e2 = read_reply(sock)
    if v == nil then sock:close() return nil, e2 end
    out[i] = v
  end
  sock:setkeepalive(30000, 32)
  return out
end

return M
