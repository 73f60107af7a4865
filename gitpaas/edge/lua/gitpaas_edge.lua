-- gitpaas' edge: Hipache routes from Redis served by nginx (see docs/router.md).
--
-- Routes live in Redis as Hipache keeps them; each nginx worker reads them through the
-- shared dict gp_routes (one entry per request host), filled on a miss by one EVAL and
-- invalidated by the pub/sub channel <prefix>routes. Entries past their TTL keep serving
-- while a background timer re-reads them, so Redis being down only hurts unknown hosts.
local resp = require "gitpaas_resp"
local balancer = require "ngx.balancer"
local lrucache = require "resty.lrucache"
local new_tab = require "table.new"
local ffi = require "ffi"
local base = require "resty.core.base"
require "resty.core.request"  -- the FFI declarations of the request's headers
require "resty.core.var"      -- and of its variables

local ngx, tonumber, tostring, type, pairs, ipairs = ngx, tonumber, tostring, type, pairs, ipairs
local find, sub, lower, gmatch, byte, format = string.find, string.sub, string.lower, string.gmatch,
  string.byte, string.format
local match = string.match
local concat, random, gsub = table.concat, math.random, string.gsub
local var, now, exit = ngx.var, ngx.now, ngx.exit
local http_version, raw_header, clear_header = ngx.req.http_version, ngx.req.raw_header,
  ngx.req.clear_header

local M = {}
local conf
local routes = ngx.shared.gp_routes
local state = ngx.shared.gp_state
local metrics = ngx.shared.gp_metrics
local parsed = lrucache.new(20000)

-- One round trip per host: the first non-empty frontend of the lookup order, the host's
-- dead set and its expiry, and the app's edge settings (hash <prefix>edge:<identifier>).
local LOOKUP = [[
local prefix, host = ARGV[1], ARGV[2]
local names, rest = {host}, host
while true do
  local dot = string.find(rest, '.', 1, true)
  if not dot then break end
  rest = string.sub(rest, dot + 1)
  if rest == '' then break end
  names[#names + 1] = '*.' .. rest
end
if host ~= '*' then names[#names + 1] = '*' end
local found, list = '', {}
for _, name in ipairs(names) do
  list = redis.call('LRANGE', prefix .. 'frontend:' .. name, 0, -1)
  if #list > 0 then found = name break end
end
local settings = {}
if #list > 0 then settings = redis.call('HGETALL', prefix .. 'edge:' .. list[1]) end
local dkey = prefix .. 'dead:' .. host
return {found, list, redis.call('SMEMBERS', dkey), redis.call('PTTL', dkey), settings}
]]

function M.init(c)
  conf = c
end

-- -- route entries ------------------------------------------------------------------------

-- Serialised: expires \n fetched \n identifier \n dead_until \n dead,csv \n k=v;k=v \n urls...
local function serialize(answer, now)
  local ttl = conf.cache_ttl
  local list = answer[2]
  local found = answer[1] ~= "" and #list > 0
  if not found then ttl = conf.miss_ttl end
  local expires = now + ttl * (0.75 + 0.5 * random())
  local dead = answer[3]
  local pttl = tonumber(answer[4]) or -2
  local dead_until = pttl > 0 and now + pttl / 1000 or (pttl == -1 and now + 1e9 or 0)
  local settings, s = answer[5] or {}, {}
  for i = 1, #settings, 2 do s[#s + 1] = settings[i] .. "=" .. settings[i + 1] end
  local parts = {expires, now, found and list[1] or "", dead_until, concat(dead, ","),
                 concat(s, ";")}
  if found then
    for i = 2, #list do parts[#parts + 1] = list[i] end
  end
  return concat(parts, "\n"), ttl
end

local function parse_backend(url)
  local host, port = url:match("^http://([^:/]+):(%d+)/?$")
  if not host then host = url:match("^http://([^:/]+)/?$") port = 80 end
  if not host then host, port = url:match("^([%w%.%-]+):(%d+)$") end
  if not host then return nil end
  return host, tonumber(port)
end

local tally  -- the app's request counters (below)

-- A parsed entry is ONE table whose fields live in its array part, allocated with the
-- table itself (table.new with at most 15 slots: LuaJIT colocates such an array), so a
-- request reads 2-3 adjacent cache lines of its host's data instead of 4 objects (an
-- entry with a hash part, a backends list, a backend, the app's counter record). With
-- 10,000 hosts every request's entry is cold by the time its host comes round again
-- (docs/performance.md, issue 12 round 4). The counts of the requests served by this
-- entry live in it too (flushed per app).
local EXPIRES, FETCHED, N, IDENT, HOST1, PORT1, OPTS, C200, LISTED, BACKENDS, TALLY, OTHER,
      DEAD, DEAD_UNTIL = 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14
--  EXPIRES, FETCHED: seconds; N: backend URLs listed (Hipache's "lone backend" rule counts
--  these); IDENT: the identifier ("" when no frontend); HOST1, PORT1: the backend when the
--  list holds exactly one (usable) URL, else false; OPTS: false, or the app's edge settings
--  {max_body, read_timeout, send_timeout, connect_timeout, redirect}; C200: 200 answers
--  not yet flushed; LISTED: in the flush list; BACKENDS: {host, port, idx, url} tables;
--  TALLY: the app's record (metric keys); OTHER: false or {status = count} of the other
--  answers; DEAD: false or the set of dead indexes read from Redis; DEAD_UNTIL: its expiry.

local function parse_opts(settings)
  local o = {}
  for kv in gmatch(settings, "[^;]+") do
    local k, v = kv:match("^([^=]+)=(.*)$")
    if k then o[k] = v end
  end
  local opts = {max_body = tonumber(o.client_max_body_size or ""),
                read_timeout = tonumber(o.proxy_read_timeout or ""),
                send_timeout = tonumber(o.proxy_send_timeout or ""),
                connect_timeout = tonumber(o.proxy_connect_timeout or ""),
                redirect = o.https_redirect == "true"}
  opts.timeouts = (opts.read_timeout or opts.send_timeout or opts.connect_timeout) and true
  if opts.max_body or opts.timeouts or opts.redirect then return opts end
  return false
end

local function parse(raw)
  local r = parsed:get(raw)
  if r then return r end
  local fields, i = {}, 0
  for line in gmatch(raw .. "\n", "([^\n]*)\n") do i = i + 1 fields[i] = line end
  local ident = fields[3]
  local backends = {}
  for j = 7, i do
    local host, port = parse_backend(fields[j])
    if host then
      backends[#backends + 1] = {host = host, port = port, idx = j - 7, url = fields[j]}
    end
  end
  local dead = false
  if fields[5] ~= "" then
    dead = {}
    for d in gmatch(fields[5], "[^,]+") do dead[tonumber(d)] = true end
  end
  local one = i - 6 == 1 and backends[1]
  r = new_tab(14, 0)
  r[EXPIRES], r[FETCHED], r[N], r[IDENT] = tonumber(fields[1]), tonumber(fields[2]), i - 6, ident
  r[HOST1], r[PORT1] = one and one.host or false, one and one.port or false
  r[OPTS], r[C200], r[LISTED], r[BACKENDS] = parse_opts(fields[6]), 0, false, backends
  r[TALLY], r[OTHER] = tally(ident ~= "" and ident or "-"), false
  r[DEAD], r[DEAD_UNTIL] = dead, tonumber(fields[4])
  parsed:set(raw, r)
  return r
end

local lookup2
local lookup_sha

local function hex(bin)
  return (bin:gsub(".", function(ch) return format("%02x", byte(ch)) end))
end

local function fetch(host)
  if state:get("down") then return nil, "redis is down" end
  -- EVALSHA: Redis neither receives nor hashes the script's text on every lookup
  if not lookup_sha then lookup_sha = hex(ngx.sha1_bin(LOOKUP)) end
  local answer, err = resp.call(conf, {"EVALSHA", lookup_sha, 0, conf.prefix, host},
                                conf.redis_timeout)
  if not answer and err and find(err, "NOSCRIPT", 1, true) then
    answer, err = resp.call(conf, {"EVAL", LOOKUP, 0, conf.prefix, host}, conf.redis_timeout)
  end
  if not answer then
    state:set("down", true, 0.5)
    ngx.log(ngx.WARN, "gitpaas edge: redis: ", err)
    return nil, err
  end
  local raw = serialize(answer, ngx.now())
  -- kept past the TTL: a stale entry still serves while Redis is away
  routes:set(host, raw, 0)
  return parse(raw)
end

-- Entries past their TTL are re-read in the background, in batches: one timer, one
-- pooled connection, up to REFRESH_BATCH lookups pipelined. (A timer and a lookup per
-- host, as before, cost a timer, often a new Redis connection, and a round trip each:
-- 10,000 hosts with a 60 s TTL make ~170 re-reads a second, measurable per request;
-- issue 12 round 5.) The "rf" key in gp_state keeps a host from being queued twice (by
-- any worker) within 5 s.
local refresh_queue, refresh_n, refreshing = {}, 0, false
local REFRESH_BATCH, REFRESH_MAX = 100, 20000

local function refresh_batch(batch)
  if state:get("down") then return end
  if not lookup_sha then lookup_sha = hex(ngx.sha1_bin(LOOKUP)) end
  local cmds = new_tab(#batch, 0)
  for i, host in ipairs(batch) do cmds[i] = {"EVALSHA", lookup_sha, 0, conf.prefix, host} end
  local answers, err = resp.pipeline(conf, cmds, conf.redis_timeout)
  if not answers then
    state:set("down", true, 0.5)
    ngx.log(ngx.WARN, "gitpaas edge: redis: ", err)
    return
  end
  for i, host in ipairs(batch) do
    local answer = answers[i]
    if type(answer) == "table" then
      routes:set(host, (serialize(answer, ngx.now())), 0)
    else
      fetch(host)  -- an error reply (NOSCRIPT: Redis restarted): alone, with EVAL
    end
  end
end

local function refresher(premature)
  if not premature then
    while refresh_n > 0 do
      local n = refresh_n < REFRESH_BATCH and refresh_n or REFRESH_BATCH
      local batch = new_tab(n, 0)
      for i = 1, n do
        batch[i] = refresh_queue[refresh_n]
        refresh_queue[refresh_n] = nil
        refresh_n = refresh_n - 1
      end
      local ok, err = pcall(refresh_batch, batch)
      if not ok then ngx.log(ngx.ERR, "gitpaas edge: route refresh: ", err) end
      for i = 1, n do state:delete("rf\t" .. batch[i]) end
    end
  end
  refreshing = false
end

local function queue_refresh(host)
  if refresh_n >= REFRESH_MAX or not state:add("rf\t" .. host, true, 5) then return end
  refresh_n = refresh_n + 1
  refresh_queue[refresh_n] = host
  if not refreshing then refreshing = ngx.timer.at(0, refresher) and true or false end
end

-- A per-worker first level: host -> parsed entry, dropped whole when any invalidation
-- happened (gp_state "gen"), so a known host costs a table lookup. The generation is read
-- from the shared dict at most once per clock tick of the worker (ngx.now(), updated each
-- event-loop iteration): a swap is seen by this worker's next event-loop iteration.
local l1, l1_gen, l1_n, l1_checked = {}, -1, 0, -1
local slot_gen, slot_n = 1, 0  -- the host slots' generation and count (below)
local drain_slots  -- moves the slots' counts into their entries (before a flush; below)
local listed, nlisted = {}, 0  -- the entries with counts not yet in gp_metrics (below)

local function check_gen(t)
  l1_checked = t
  local gen = state:get("gen") or 0
  if gen ~= l1_gen then
    l1, l1_gen, l1_n = {}, gen, 0
    slot_gen, slot_n = slot_gen + 1, 0
  end
end

local function lookup(host)
  local t = now()
  if t ~= l1_checked then check_gen(t) end
  local r = l1[host]
  if r and r[EXPIRES] > t then return r end
  r = lookup2(host)
  if r and l1_n < 50000 then
    if not l1[host] then l1_n = l1_n + 1 end
    l1[host] = r
  end
  return r
end

lookup2 = function(host)
  local raw = routes:get(host)
  if not raw then return fetch(host) end
  local r = parse(raw)
  local now = ngx.now()
  if r[EXPIRES] > now and r[FETCHED] >= (state:get("epoch") or 0) then return r end
  if r[IDENT] == "" then  -- a stale miss is re-read at once: a new frontend shows quickly
    return fetch(host) or r
  end
  queue_refresh(host)
  return r
end
M.lookup = lookup

-- -- choosing a backend -------------------------------------------------------------------

local function is_dead(r, host, b)
  if r[N] < 2 then return false end  -- Hipache: a lone backend is never excluded
  local dead = r[DEAD]
  if dead and dead[b.idx] and r[DEAD_UNTIL] > ngx.now() then return true end
  return state:get("d\t" .. host .. "\t" .. b.idx) ~= nil
end

local function pick(r, host, tried)
  local backends = r[BACKENDS]
  if #backends == 1 and not tried then return backends[1], 1 end
  local live = {}
  for _, b in ipairs(backends) do
    if not (tried and tried[b.idx]) and not is_dead(r, host, b) then live[#live + 1] = b end
  end
  if #live == 0 then return nil, 0 end
  return live[random(#live)], #live
end

local function mark_dead(ctx, b)
  local r = ctx.route
  if r[N] < 2 then return end
  state:set("d\t" .. ctx.host .. "\t" .. b.idx, true, conf.dead_ttl)
  local marks = ctx.marks or {}
  marks[#marks + 1] = b.idx
  ctx.marks = marks
end

local function push_dead(premature, host, marks)
  if premature then return end
  local key = conf.prefix .. "dead:" .. host
  local cmds = {{"MULTI"}}
  for _, idx in ipairs(marks) do cmds[#cmds + 1] = {"SADD", key, idx} end
  cmds[#cmds + 1] = {"EXPIRE", key, math.ceil(conf.dead_ttl)}
  cmds[#cmds + 1] = {"EXEC"}
  local ok, err = resp.pipeline(conf, cmds, conf.redis_timeout)
  if not ok then ngx.log(ngx.WARN, "gitpaas edge: dead mark not written: ", err) end
end

-- -- phases -------------------------------------------------------------------------------

-- Connection-listed headers nginx must not pass on: the framing ones nginx owns stay.
-- (Keep-Alive, Proxy-Connection, TE and Trailer are dropped by nginx.conf itself.)
local KEEP = {host = true, ["content-length"] = true, ["transfer-encoding"] = true,
              upgrade = true, connection = true, ["keep-alive"] = true, close = true}

-- Any LF not preceded by CR in the request head (nginx itself accepts bare LF).
local function bare_lf(raw)
  if byte(raw, 1) == 10 then return true end
  local pos = find(raw, "\n", 2, true)
  while pos do
    if byte(raw, pos - 1) ~= 13 then return true end
    pos = find(raw, "\n", pos + 1, true)
  end
  return false
end

-- The same verdict without copying the head (raw_header() makes a new Lua string of it on
-- every request: with 10,000 distinct heads, interning it cost ~1.4 us a request, 0.6 us
-- with one). nginx keeps each header's name and value as pointers into the buffer it read
-- the head into, and the request line ($request) points there too. nginx writes a NUL
-- over the byte that ended each value (CR, LF or the first trailing SP/HT); raw_header()
-- gives that NUL back as CR when an LF follows it, else as LF (which bare_lf refuses), and
-- this check reads it the same way: a value's NUL not followed by LF is a bare LF (400,
-- as before). When the request line and every stored header line follow one another in
-- memory, the request line ends in SP* CR LF, each header line in NUL LF, the empty line
-- after them is CR+ LF, and nginx's own count of the head's bytes ($request_length,
-- before the body is read) equals that region's length, then no byte of the head is
-- unaccounted for and bare_lf(raw_header()) would find nothing. Anything else (an ignored
-- invalid header line between two stored ones, a head spread over several buffers, more
-- than MAX_HEADERS headers, any doubt) proves nothing: the caller scans raw_header() as
-- before. Returns 1 (no bare LF), -1 (a bare LF) or 0 (not proven either way).
local C, ffi_cast, get_request = ffi.C, ffi.cast, base.get_request
local u8p = ffi.typeof("const unsigned char *")
local MAX_HEADERS = 64
local elts = ffi.new("ngx_http_lua_ffi_table_elt_t[?]", MAX_HEADERS)
local truncated = ffi.new("int[1]")
local vptr, vlen, verr = ffi.new("char *[1]"), ffi.new("size_t[1]"), ffi.new("char *[1]")
local lowbuf = ffi.new("char[32]")

-- The index of the LF ending a line whose content ends before b[i] when the bytes from
-- b[i] are [SP/HT]* CR+ LF (nginx's header syntax), else -1.
local function crlf_at(b, i)
  local c = b[i]
  while c == 32 or c == 9 do i = i + 1 c = b[i] end
  if c ~= 13 then return -1 end
  repeat i = i + 1 c = b[i] until c ~= 13
  if c ~= 10 then return -1 end
  return i
end

-- A header line whose value ends at b[i], the NUL nginx wrote there over the byte after
-- the value (CR, LF, or the first of its trailing spaces, which RFC 9112 allows as OWS;
-- nginx keeps a tab in the value): the index of its LF; -2 for a bare LF; -1 when in
-- doubt. After the NUL, [SP/HT]* CR+ LF is a well-ended line (the NUL was a CR, or
-- trailing whitespace before CR LF); a lone LF right after it is taken as CR LF (the NUL
-- was the CR; one space before a bare LF reads the same and cannot be told apart: nginx
-- overwrote the byte); anything else (whitespace then a bare LF, or the NUL was itself a
-- bare LF) is a bare LF.
local function value_end(b, i)
  if b[i] ~= 0 then return -1 end
  local c = b[i + 1]
  if c == 10 then return i + 1 end
  if c == 32 or c == 9 or c == 13 then
    local lf = crlf_at(b, i + 1)
    if lf >= 0 then return lf end
  end
  return -2
end

-- What head_check() saw on the way (valid when it returned 1): the Content-Length value
-- (a number) and the Connection value (a string), or false; saves two ngx.var reads;
-- head_fwd: a header strip_forwarded() drops was there; head_te: a Transfer-Encoding
-- header came (a body of unknown length); head_abs: the request target is in absolute
-- form (`GET http://host/path`), whose host nginx routes on, not the Host header's.
local head_cl, head_conn, head_fwd, head_te, head_abs = false, false, false, false, false

-- Are the n bytes at p `lname` (lower case), in any case?
local function name_is(p, n, lname)
  if n ~= #lname then return false end
  for i = 0, n - 1 do
    local c = p[i]
    if c >= 65 and c <= 90 then c = c + 32 end
    if c ~= byte(lname, i + 1) then return false end
  end
  return true
end

-- Forwarding headers only the edge may set. nginx.conf sets X-Forwarded-For (appending
-- the client's address to the client's list, as Hipache did), -Proto, -Port and -Host
-- and X-Real-IP, replacing a client's; any other X-Forwarded-* and Forwarded (RFC 7239)
-- from a client would reach the app as if the edge had said them (Rack reads
-- X-Forwarded-Ssl, X-Forwarded-Scheme and, from Rack 3, Forwarded's host and proto;
-- Spring and Symfony X-Forwarded-Prefix): the edge drops them.
-- (No Lua string is made: requests through a CDN carry X-Forwarded-For every time.)
local function fwd_name(p, n)
  if n == 9 then return name_is(p, 9, "forwarded") end
  if n < 13 or (p[0] ~= 120 and p[0] ~= 88) then return false end  -- x, X
  for i = 1, 11 do
    local c = p[i]
    if c >= 65 and c <= 90 then c = c + 32 end
    if c ~= byte("x-forwarded-", i + 1) then return false end
  end
  local rest, k = p + 12, n - 12
  return not (name_is(rest, k, "for") or name_is(rest, k, "proto")
              or name_is(rest, k, "port") or name_is(rest, k, "host"))
end

local function head_check()
  head_cl, head_conn, head_fwd, head_te, head_abs = false, false, false, false, false
  local r = get_request()
  truncated[0] = 0
  local n = C.ngx_http_lua_ffi_req_get_headers_count(r, MAX_HEADERS, truncated)
  if n < 0 or truncated[0] ~= 0 then return 0 end
  if C.ngx_http_lua_ffi_var_get(r, "request", 7, lowbuf, 0, vptr, vlen, verr) ~= 0 then
    return 0
  end
  local b = ffi_cast(u8p, vptr[0])
  local e = crlf_at(b, tonumber(vlen[0]))  -- the request line's LF
  if e < 0 then return 0 end
  local j = 0  -- the method (nginx checked the line: a space follows it)
  while j < e and b[j] ~= 32 do j = j + 1 end
  head_abs = b[j + 1] ~= 47 and b[j + 1] ~= 42  -- neither "/" nor "*"
  if n > 0 then
    C.ngx_http_lua_ffi_req_get_headers(r, elts, n, 1)
    for k = 0, n - 1 do
      local h = elts[k]
      local key = tonumber(h.key.data - b)
      local value = tonumber(h.value.data - b)
      if value <= key or value > key + h.key.len + 4096 then return 0 end
      local lf = value_end(b, value + h.value.len)
      if lf == -2 then return -1 end
      -- a gap before this line (an ignored line, another buffer): not proven
      if lf < 0 or key ~= e + 1 then return 0 end
      e = lf
      local klen = h.key.len
      if klen == 14 and name_is(h.key.data, 14, "content-length") then
        local d, cl = h.value.data, 0
        for i = 0, h.value.len - 1 do
          local c = d[i]
          if c < 48 or c > 57 then return 0 end  -- (nginx refused anything else already)
          cl = cl * 10 + c - 48
        end
        head_cl = cl
      elseif klen == 10 and name_is(h.key.data, 10, "connection") then
        if head_conn then return 0 end  -- two Connection lines: ngx.var joins them
        head_conn = ffi.string(h.value.data, h.value.len)
      elseif klen == 17 and name_is(h.key.data, 17, "transfer-encoding") then
        head_te = true
      elseif (klen == 9 or klen > 12) and fwd_name(h.key.data, klen) then
        head_fwd = true
      end
    end
  end
  local c = b[e + 1]  -- the empty line: CR+ LF
  if c ~= 13 then return 0 end
  e = e + 1
  repeat e = e + 1 c = b[e] until c ~= 13
  if c ~= 10 then return 0 end
  if C.ngx_http_lua_ffi_var_get(r, "request_length", 14, lowbuf, 0, vptr, vlen, verr) ~= 0 then
    return 0
  end
  local d, len = ffi_cast(u8p, vptr[0]), 0
  for i = 0, tonumber(vlen[0]) - 1 do len = len * 10 + d[i] - 48 end
  return len == e + 1 and 1 or 0
end
M.head_check = head_check

-- -- the host slots: a per-worker first level read without making the host a Lua string --
--
-- With 10,000 hosts, `ngx.var.host` interned the host name on every request (LuaJIT's
-- string table: a bucket and a chain of strings, each cold by the time its host comes
-- round again; the bench's names differ in a few digits and share hash chains) and the
-- per-worker table l1 cost another node and key: ~1.2 us a request (issue 12, rounds 4
-- and 5). Here the host's bytes are read where nginx keeps them ($host through the FFI,
-- no string made), hashed, and found in an open-addressing array of 64-byte slots (one
-- cache line each) holding the name inline; the slot's index leads to the parsed entry
-- and the host's Lua string, side by side in one Lua array (refs[2i], refs[2i+1]). A slot
-- belongs to generation slot_gen: an invalidation empties them all by bumping it.
-- Names longer than NAME_MAX, and every miss, take the l1 path (ngx.var.host) and then
-- fill a slot.
--
-- A slot is two cache lines (128 bytes, aligned: the CPU fetches the pair together): the
-- name, and what a request to a host with one backend and no app settings needs, so that
-- such a request reads its slot and the refs array, not its entry, its backend's string
-- or its app's counters (each cold with 10,000 hosts; issue 12, round 6): the entry's
-- expiry, the lone backend's address (up to ADDR_MAX bytes) and port (0: not such a
-- host, the request takes the entry's path), and its 200 answers not yet moved to the
-- entry's counters (drain_slot(): before each flush, and before a slot's entry is
-- replaced or the slot reused; emptying the slots, an invalidation, stays O(1): an
-- emptied slot keeps its counts and its entry in refs until then).
local NAME_MAX, ADDR_MAX = 54, 46
local slot_t = ffi.typeof("struct { int32_t hash; uint32_t gen; uint16_t len; "
                          .. "uint8_t name[54]; double expires; uint32_t c200; "
                          .. "uint16_t port; uint8_t addrlen; uint8_t addr[49]; }")
assert(ffi.sizeof(slot_t) == 128)
local SLOTS = 65536  -- at most SLOTS / 2 hosts (8 MB a worker)
local MASK = SLOTS - 1
local slots_mem = ffi.new(ffi.typeof("$[?]", slot_t), SLOTS + 1)
local slots = ffi.cast(ffi.typeof("$ *", slot_t),  -- aligned on a pair of cache lines
  bit.band(ffi.cast("uintptr_t", slots_mem) + 127, bit.bnot(ffi.cast("uintptr_t", 127))))
M.slots_mem = slots_mem  -- (slots is a bare pointer into it: keep it from the GC)
local refs = new_tab(2 * SLOTS + 2, 0)
local tobit, bxor, band, rshift = bit.tobit, bit.bxor, bit.band, bit.rshift

-- The hash and the name compare are calls into C (nginx's ngx_hash_key: h * 31 + byte,
-- and libc's memcmp), not loops in Lua: LuaJIT compiles a Lua loop as a trace of its
-- own, and the values crossing from the request's trace into it (the pointers, the slot)
-- are boxed, 75 bytes of garbage a request (issue 12, round 6).
ffi.cdef[[
uintptr_t ngx_hash_key(const unsigned char *data, size_t len);
int memcmp(const void *s1, const void *s2, size_t n);
]]
local ngx_hash_key, memcmp = C.ngx_hash_key, C.memcmp

local function hash_bytes(p, n)
  local h = tobit(tonumber(band(ngx_hash_key(p, n), 0x7fffffff)) + n)
  return band(bxor(h, rshift(h, 13)), MASK)
end

-- The slot of the n bytes at p (hash h): its index, or nil and the free slot's index
-- (nil and nil: none within PROBES). The hash is no secret and an anonymous client picks
-- the Host names (each unknown one gets a slot for its 404): names made to collide
-- ("ao" and "c1" hash alike, and so does every string of such pairs) would otherwise
-- build one run of thousands of slots that every lookup landing in it walks. So a
-- lookup gives up after PROBES slots and takes the l1 path, as a name too long does.
local PROBES = 16
local function slot_find(p, n, h)
  local i = h
  for _ = 1, PROBES do
    local s = slots[i]
    if s.gen ~= slot_gen then return nil, i end
    if s.len == n and s.hash == h and memcmp(s.name, p, n) == 0 then return i end
    i = band(i + 1, MASK)
  end
  return nil, nil
end

-- The index of the request's host's slot when it holds an entry not expired at t; else
-- nil.
local function slot_lookup(t)
  if C.ngx_http_lua_ffi_var_get(get_request(), "host", 4, lowbuf, 0, vptr, vlen, verr) ~= 0 then
    return nil
  end
  local n = tonumber(vlen[0])
  if n < 2 or n > NAME_MAX then return nil end  -- ("_": no Host; see route())
  local p = ffi_cast(u8p, vptr[0])
  local i = slot_find(p, n, hash_bytes(p, n))
  if not i or slots[i].expires <= t then return nil end
  return i
end

-- The slots holding 200 answers not yet in their entries' counters.
local slot_listed, slot_nlisted = {}, 0

local function drain_slot(i)
  local s = slots[i]
  local c = s.c200
  if c == 0 then return end
  s.c200 = 0
  local r = refs[2 * i]
  r[C200] = r[C200] + c
  if not r[LISTED] then
    r[LISTED] = true
    nlisted = nlisted + 1
    listed[nlisted] = r
  end
end

-- Moves the counts of up to `limit` listed slots to their entries (which get listed).
local function drain_some(limit)
  local stop = slot_nlisted > limit and slot_nlisted - limit or 0
  for k = slot_nlisted, stop + 1, -1 do
    drain_slot(slot_listed[k])
    slot_listed[k] = nil
  end
  slot_nlisted = stop
end

drain_slots = function() drain_some(slot_nlisted) end

-- A 200 answer of slot i (the request's host's slot, still of this generation).
local function count_in_slot(i)
  local s = slots[i]
  local c = s.c200
  if c == 0 then
    slot_nlisted = slot_nlisted + 1
    slot_listed[slot_nlisted] = i
  end
  s.c200 = c + 1
end

local function slot_put(host, r)
  local n = #host
  if n < 2 or n > NAME_MAX then return end
  local p = ffi_cast(u8p, host)
  local h = hash_bytes(p, n)
  local i, free = slot_find(p, n, h)
  local s
  if i then
    s = slots[i]
    if refs[2 * i] ~= r then drain_slot(i) end  -- its counts to the entry they served
  else
    if not free or slot_n >= SLOTS / 2 then return end
    i, slot_n = free, slot_n + 1
    s = slots[i]
    drain_slot(i)  -- (an emptied slot keeps its counts until reused or flushed)
    s.hash, s.len, s.gen = h, n, slot_gen
    ffi.copy(s.name, p, n)
  end
  refs[2 * i], refs[2 * i + 1] = r, host
  s.expires = r[EXPIRES]
  local addr = r[HOST1]
  if addr and not r[OPTS] and #addr <= ADDR_MAX then
    ffi.copy(s.addr, addr, #addr)
    s.addrlen, s.port = #addr, r[PORT1]
  else
    s.port = 0
  end
end

local function strip_connection_listed(h)
  for token in gmatch(h, "[^,%s]+") do
    token = lower(token)
    if not KEEP[token] then clear_header(token) end
  end
end

-- Drop the forwarding headers fwd_name() names (see there).
local function strip_forwarded()
  local r = get_request()
  truncated[0] = 0
  local n = C.ngx_http_lua_ffi_req_get_headers_count(r, MAX_HEADERS, truncated)
  local drop
  if n > 0 and truncated[0] == 0 then
    C.ngx_http_lua_ffi_req_get_headers(r, elts, n, 1)
    for k = 0, n - 1 do
      local key = elts[k].key
      local klen = tonumber(key.len)
      if (klen == 9 or klen > 12) and fwd_name(key.data, klen) then
        drop = drop or {}
        drop[#drop + 1] = ffi.string(key.data, klen)
      end
    end
  elseif n > 0 then  -- more headers than MAX_HEADERS
    for name in pairs(ngx.req.get_headers(0, true)) do
      if (#name == 9 or #name > 12) and fwd_name(ffi_cast(u8p, name), #name) then
        drop = drop or {}
        drop[#drop + 1] = name
      end
    end
  end
  if drop then
    for k = 1, #drop do clear_header(drop[k]) end
  end
end

-- The request's state (ngx.ctx) comes from a per-worker pool and goes back to it at the
-- end of log(): a table made per request was most of what a request allocated (~250 of
-- ~470 bytes), and with 10,000 hosts each garbage collection cycle walks a heap of ~30 MB
-- of cold objects: ~1 us of every request went to the collector (issue 12, round 6).
-- A table is reused only once its request is past its log phase, the last that reads
-- ngx.ctx; a request whose state was lost (an internal redirect to the error page gives
-- it a fresh ngx.ctx) leaves its table to the collector. `pooled` tells ours apart.
local ctx_pool, ctx_free, CTX_POOL_MAX = {}, 0, 1024

local function take_ctx()
  local n = ctx_free
  if n == 0 then
    return {route = false, host = false, current = false, more = 0, tried = false,
            first = false, marks = false, retried = false, slot = false, sgen = 0,
            pooled = true}
  end
  local ctx = ctx_pool[n]
  ctx_pool[n] = false
  ctx_free = n - 1
  return ctx
end

local function give_ctx(ctx)
  if ctx.pooled ~= true or ctx_free >= CTX_POOL_MAX then return end
  ctx.route, ctx.host, ctx.current, ctx.more, ctx.tried, ctx.first = false, false, false,
    0, false, false
  ctx.marks, ctx.retried, ctx.slot = false, false, false
  ctx_free = ctx_free + 1
  ctx_pool[ctx_free] = ctx
end

-- A body of unknown length (HTTP/1.1 chunked; HTTP/2 without content-length): is it longer
-- than `limit`? nginx reads it here, as it would before proxying anyway (proxy_request_
-- buffering on): into its buffer, past client_body_buffer_size into a temp file, never
-- into Lua memory; the ceiling (client_max_body_size) still stops it with a 413. Once
-- read, nginx knows its length: $content_length. (docs/router.md, "Request bodies")
local read_body, get_body_data, get_body_file = ngx.req.read_body, ngx.req.get_body_data,
  ngx.req.get_body_file

local function body_over(limit)
  read_body()
  local n = tonumber(var.content_length or "")
  if not n then
    local file = get_body_file()
    if file then
      local f = io.open(file, "rb")
      n = f and f:seek("end") or 0
      if f then f:close() end
    else
      local data = get_body_data()
      n = data and #data or 0
    end
  end
  return n > limit
end

-- Does the Host header name another host than `host`, the one nginx routes on (from an
-- absolute-form request target)? The app gets the Host header (with its port), and
-- builds links from it: `GET http://shop.example.com/reset` with `Host: evil.example`
-- would reach shop's app as a request for evil.example (a password-reset link to the
-- client's host). Compared as nginx makes $host: lower case, no port, no trailing dot.
local function host_differs(host, hh)
  if not hh or hh == "" then return false end  -- (HTTP/1.0) the app gets no Host at all
  hh = lower(hh)
  if byte(hh, 1) == 91 then  -- "[": an IPv6 literal
    hh = match(hh, "^(%[[^%]]*%])") or hh
  else
    hh = match(hh, "^([^:]*)") or hh
  end
  if byte(hh, -1) == 46 then hh = sub(hh, 1, -2) end  -- "."
  return hh ~= host
end

-- access_by_lua: validate, route, pick the first backend.
function M.route()
  local verdict = 0
  local version = http_version()
  local hcl, hconn, hfwd, hte, habs  -- head_check()'s findings, this request's own: a
  -- lookup below may yield (Redis) and another request's head_check() then overwrites head_*
  if version < 2 then
    verdict = head_check()
    if verdict < 0 or (verdict == 0 and bare_lf(raw_header())) then return exit(400) end
    hcl, hconn, hfwd, hte, habs = head_cl, head_conn, head_fwd, head_te, head_abs
    if verdict == 0 then habs = not find(var.request, "^%S+ [/*]") end
    if habs and host_differs(var.host, var.http_host) then return exit(400) end
  end
  local t = now()
  if t ~= l1_checked then check_gen(t) end
  local i = slot_lookup(t)
  local r, host, fast
  if i then
    -- fast: a lone backend, no app settings, read from the slot (the entry is not read)
    r, host, fast = refs[2 * i], refs[2 * i + 1], slots[i].port ~= 0
  else
    host = var.host
    if host == "_" then  -- $host falls back to server_name: was there a Host header at all?
      local hh = var.http_host
      if not hh or hh == "" then return exit(400) end
    end
    if host == "__ping__" then
      ngx.header["Content-Type"] = "text/plain"
      ngx.print("ok\n")
      return exit(200)
    end
    r = lookup(host)
    if not r then return exit(503) end
    slot_put(host, r)
  end
  if not fast and r[N] == 0 then return exit(404) end  -- no frontend, or no backends
  -- the request's state for balance() and log(), from the pool (see take_ctx).
  -- current: the backend picked; false while the entry's lone backend (HOST1) serves.
  -- slot, sgen: the host's slot and its generation when the request is fast.
  local ctx = take_ctx()
  ctx.route, ctx.host = r, host
  if fast then ctx.slot, ctx.sgen = i, slot_gen end
  ngx.ctx = ctx
  local o = not fast and r[OPTS]
  if (conf.https_redirect or (o and o.redirect)) and conf.https_port
     and var.scheme == "http" then
    local port = conf.https_port == 443 and "" or ":" .. conf.https_port
    return ngx.redirect("https://" .. host .. port .. var.request_uri, 301)
  end
  local limit = o and o.max_body or conf.max_body
  local unknown = false  -- a body of unknown length to hold to the limit (the end)
  if limit and limit > 0 then
    local cl
    if verdict == 1 then cl = hcl else cl = tonumber(var.content_length or "") end
    if cl then
      if cl > limit then return exit(413) end
    elseif limit < conf.body_ceiling then
      if verdict == 1 then unknown = hte
      else unknown = version >= 2 or var.http_transfer_encoding ~= nil end
    end
  end
  if not fast and not r[HOST1] then
    local b, live = pick(r, host)
    if not b then return exit(502) end
    ctx.current = b
    ctx.more = live - 1 < conf.retries and live - 1 or conf.retries
  end
  local h
  if verdict == 1 then h = hconn else h = var.http_connection end
  if h then strip_connection_listed(h) end
  if verdict ~= 1 or hfwd then strip_forwarded() end
  -- last: reading the body yields (so does a lookup above); a 502 needs no body
  if unknown and body_over(limit) then return exit(413) end
end

-- The app's own proxy timeouts (app settings), if it has any: once per request, before
-- the first try.
local function set_timeouts(o)
  if o and o.timeouts then
    balancer.set_timeouts(o.connect_timeout or conf.connect_timeout,
                          o.send_timeout or conf.send_timeout,
                          o.read_timeout or conf.read_timeout)
  end
end

local errmsg = ffi.new("char *[1]")

-- balancer_by_lua: the first pick, then another live backend after each failure.
function M.balance()
  local ctx = ngx.ctx
  local r = ctx.route
  local b = ctx.current
  local tried = ctx.tried
  local i = ctx.slot
  if i and not tried and ctx.sgen == slot_gen then  -- the lone backend, from the slot
    ctx.tried = true
    local s = slots[i]
    if C.ngx_http_lua_ffi_balancer_set_current_peer(get_request(), s.addr, s.addrlen,
                                                     s.port, errmsg) ~= 0 then
      ngx.log(ngx.ERR, "gitpaas edge: bad backend ", ffi.string(s.addr, s.addrlen), ":",
              s.port, ": ", ffi.string(errmsg[0]))
      return exit(502)
    end
    return
  end
  if not tried and not b then  -- the entry's lone backend: no retry, no dead mark
    ctx.tried = true
    set_timeouts(r[OPTS])
    local ok, err = balancer.set_current_peer(r[HOST1], r[PORT1])
    if not ok then
      ngx.log(ngx.ERR, "gitpaas edge: bad backend ", r[HOST1], ":", r[PORT1], ": ", err)
      return exit(502)
    end
    return
  end
  if tried then
    if not b then  -- (not expected: no retry was allowed) the lone backend failed
      b = r[BACKENDS][1]
      ctx.current, ctx.first = b, b.idx
    end
    local failure, code = balancer.get_last_failure()
    -- a 503 with Retry-After is an answer (busy), not a dead backend
    if not (code == 503 and var.upstream_http_retry_after) then mark_dead(ctx, b) end
    if tried == true then tried = {} ctx.tried = tried end
    tried[ctx.first] = true
    tried[b.idx] = true
    b = pick(r, ctx.host, tried)
    if not b then return exit(502) end
    ctx.current = b
    ctx.retried = true
  else
    ctx.tried, ctx.first = true, b.idx
    if ctx.more > 0 then balancer.set_more_tries(ctx.more) end
    set_timeouts(r[OPTS])
  end
  local ok, err = balancer.set_current_peer(b.host, b.port)
  if not ok then
    ngx.log(ngx.ERR, "gitpaas edge: bad backend ", b.url, ": ", err)
    return exit(502)
  end
end

-- Request counters: per worker, in the route entries themselves (C200 and OTHER, see
-- parse()), so counting a request touches no other object than its entry, and no table or
-- string is made per request, no shared-dict lock taken. A request without a route counts
-- in NOROUTE (app "-"). The entries counted in since the last flush are listed; each
-- second (and before /metrics is rendered) their counts are added to gp_metrics under
-- their app's keys (the app's record, TALLY, holds them, built once), SLICE entries at a
-- time with a yield in between: no stall (flushed in one go, the old counters stalled
-- the worker 7-56 ms a second with 10,000 apps). Each entry flushed costs ~2 us (its
-- entry, its app's record and a shared-dict increment, all cold): 10,000 busy apps cost
-- ~20 ms of the worker's CPU per flush, so when more than BUSY entries wait the flush
-- runs every FLUSH_BUSY seconds instead (issue 12 round 5): another worker's counts are
-- then up to 5 s late in /metrics (this worker's are flushed before it renders). An
-- entry replaced (refreshed) while listed stays listed until flushed.
local tallies, ntallies = {}, 0   -- app -> {app, keys = {[status] = key}, ekey}
local SLICE, BUSY, FLUSH_BUSY = 256, 1000, 5
local last_flush = 0

tally = function(app)
  local t = tallies[app]
  if t then return t end
  if ntallies >= 100000 then tallies, ntallies = {}, 0 end  -- apps come and go: bounded
  t = {app = app, keys = {}, ekey = "e\t" .. app}
  tallies[app], ntallies = t, ntallies + 1
  return t
end

local NOROUTE = new_tab(14, 0)
NOROUTE[N], NOROUTE[C200], NOROUTE[LISTED], NOROUTE[TALLY], NOROUTE[OTHER] =
  0, 0, false, tally("-"), false

local function count_key(t, status)
  local key = t.keys[status]
  if not key then
    key = "r\t" .. t.app .. "\t" .. status
    t.keys[status] = key
  end
  return key
end

-- Adds the counts of up to `limit` listed entries to gp_metrics; no yield inside.
local function flush_slice(limit)
  if slot_nlisted > 0 then drain_some(limit) end
  local stop = nlisted > limit and nlisted - limit or 0
  for i = nlisted, stop + 1, -1 do
    local r = listed[i]
    listed[i] = nil
    r[LISTED] = false
    local t = r[TALLY]
    local n = r[C200]
    if n > 0 then
      metrics:incr(count_key(t, 200), n, 0)
      r[C200] = 0
    end
    local other = r[OTHER]
    if other then
      local e5 = 0
      for status, c in pairs(other) do
        if c > 0 then
          metrics:incr(count_key(t, status), c, 0)
          other[status] = 0
          if status >= 500 then e5 = e5 + c end
        end
      end
      if e5 > 0 then metrics:incr(t.ekey, e5, 0) end
    end
  end
  nlisted = stop
end

-- Everything now (before /metrics is rendered, and at exit).
local function flush_counts()
  drain_slots()
  flush_slice(nlisted)
end

-- The timer's flush: a slice at a time, the worker serving requests in between.
local function flush_timer(premature)
  if premature then return flush_counts() end
  if nlisted + slot_nlisted > BUSY and ngx.now() - last_flush < FLUSH_BUSY then return end
  last_flush = ngx.now()
  for _ = 1, 1000 do
    if nlisted == 0 and slot_nlisted == 0 then return end
    flush_slice(SLICE)
    ngx.sleep(0.001)
  end
end

-- log_by_lua: counters, and the dead marks written to Redis.
function M.log()
  local ctx = ngx.ctx
  local status = ngx.status
  local route = ctx.route
  local r = route or NOROUTE
  local i = ctx.slot
  if status == 200 and i and ctx.sgen == slot_gen then
    count_in_slot(i)  -- (the entry is not read: see the slots)
    give_ctx(ctx)
    return
  end
  if status == 200 then
    r[C200] = r[C200] + 1
  else
    local other = r[OTHER]
    if not other then
      other = {}
      r[OTHER] = other
    end
    other[status] = (other[status] or 0) + 1
  end
  if not r[LISTED] then
    r[LISTED] = true
    nlisted = nlisted + 1
    listed[nlisted] = r
  end
  if status >= 500 and status <= 504 and route then
    local us = var.upstream_status
    if us then
      local last = tonumber(us:match("(%d+)%s*$") or "")
      if (last == 502 or last == 504 or (last == 503 and not var.upstream_http_retry_after))
         and ctx.current then
        mark_dead(ctx, ctx.current)
      end
    end
  end
  if ctx.marks then ngx.timer.at(0, push_dead, ctx.host, ctx.marks) end
  give_ctx(ctx)
end

local PAGES = {
  [400] = "Bad request\n", [404] = "No application is configured for this host.\n",
  [408] = "Request timeout\n", [413] = "Request body too large\n",
  [429] = "Too many requests\n",
  [502] = "No backend could answer this request.\n",
  [503] = "Service unavailable, try again shortly.\n",
  [504] = "The application did not answer in time.\n",
}

-- content_by_lua of the error_page location: short pages that name no app.
function M.error_page()
  local status = ngx.status
  ngx.header["Content-Type"] = "text/plain"
  ngx.header["Cache-Control"] = "no-store"
  ngx.print(PAGES[status] or "Error\n")
end

-- GET /.well-known/acme-challenge/<token> on any host: <prefix>acme:<token> from Redis.
function M.acme()
  local token = ngx.var.uri:match("^/%.well%-known/acme%-challenge/([%w_%-]+)$")
  if not token then return ngx.exit(404) end
  local value = resp.call(conf, {"GET", conf.prefix .. "acme:" .. token}, conf.redis_timeout)
  if not value or value == ngx.null then return ngx.exit(404) end
  ngx.header["Content-Type"] = "text/plain"
  ngx.print(value)
end

-- -- certificates (ssl_certificate_by_lua) -------------------------------------------------

-- Per worker, bounded: an anonymous client picks the SNI name of every handshake, so a
-- table keyed by it (as before) grew by an entry per name ever seen. Names whose
-- certificate (or wildcard's) was found live in `certs` (LRU, CERTS_MAX names: the real
-- hosts, which a flood of made-up names does not evict), names without one in `misses`
-- (LRU, MISSES_MAX: a flood churns only this one). A new name costs one failed open() (its
-- parent's wildcard is usually cached), next to the handshake's own crypto. Each entry is
-- re-read when a second old or when the certs channel bumped cert_epoch (as before).
local CERTS_MAX, MISSES_MAX = 10000, 1000
local certs, misses = lrucache.new(CERTS_MAX), lrucache.new(MISSES_MAX)

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local data = f:read("*a")
  f:close()
  return data
end

-- Whether a parsed chain's leaf and a parsed key belong together (X509_check_private_key,
-- from the libcrypto nginx is linked with; nil if it cannot be found: pairs unchecked).
-- The writers rename a new key into place, then the new chain: a read between the two
-- gets the new key with the old chain, which SSL_use_PrivateKey refuses, failing every
-- handshake for the name until the pair was re-read (a second, as it was cached).
local pair_ok
do
  local C = ffi.C
  pcall(ffi.cdef, [[
void *OPENSSL_sk_value(const void *st, int i);
int X509_check_private_key(const void *x509, const void *pkey);
void ERR_clear_error(void);
]])
  local found = pcall(function()
    return C.OPENSSL_sk_value and C.X509_check_private_key and C.ERR_clear_error
  end)
  if found then
    pair_ok = function(chain, pkey)
      local leaf = C.OPENSSL_sk_value(chain, 0)
      if leaf ~= nil and C.X509_check_private_key(leaf, pkey) == 1 then return true end
      C.ERR_clear_error()  -- the mismatch's error queue entry, not to be seen by nginx
      return false
    end
  else
    ngx.log(ngx.WARN, "gitpaas edge: X509_check_private_key not found: certificate/key",
            " pairs are not checked before use")
  end
end

-- A name's entry: {checked, epoch, crt, key, chain, pkey} as read. The key is read before
-- the chain (the order the writers rename them in). A pair whose key is not the chain's is
-- never cached nor served: the previous pair (if any; else none, so the wildcard's or the
-- default) is kept, marked to be read again at the next handshake, and remembers the
-- mismatched bytes (bad_crt, bad_key) so that files left so are not parsed (nor logged)
-- again at each handshake; the pair is served as soon as the files match.
local function load_cert(name)
  local now = ngx.now()
  local epoch = state:get("cert_epoch") or 0
  local c = certs:get(name) or misses:get(name)
  if c and c.checked + 1 > now and c.epoch == epoch then return c end
  local path = conf.certs_dir .. "/" .. name
  local key = read_file(path .. ".key")
  local crt = key and read_file(path .. ".crt")
  if c and c.crt == crt and c.key == key then
    c.checked, c.epoch = now, epoch
    return c
  end
  if c and c.bad_key and c.bad_key == key and c.bad_crt == crt then return c end  -- as was
  local new = {checked = now, epoch = epoch, crt = crt, key = key}
  if crt and key then
    local ssl = require "ngx.ssl"
    new.chain = ssl.parse_pem_cert(crt)
    new.pkey = ssl.parse_pem_priv_key(key)
  end
  if new.chain and new.pkey and pair_ok and not pair_ok(new.chain, new.pkey) then
    ngx.log(ngx.WARN, "gitpaas edge: the key of ", name, " is not its certificate's (being",
            " replaced?): ", c and c.chain and "the previous pair stays" or "not served")
    local keep = c and c.chain and c or {epoch = epoch}
    keep.checked, keep.bad_crt, keep.bad_key = 0, crt, key
    if keep ~= c then
      misses:set(name, keep)
      certs:delete(name)
    end
    return keep
  end
  if new.chain and new.pkey then
    certs:set(name, new)
    misses:delete(name)
  else
    misses:set(name, new)
    certs:delete(name)
  end
  return new
end

function M.certificate()
  local ssl = require "ngx.ssl"
  local name = ssl.server_name()
  if not name then return end
  name = lower(name)
  if not name:match("^[%w%-%.]+$") or find(name, "..", 1, true) or byte(name, 1) == 46 then
    return
  end
  local c = load_cert(name)
  if not c.chain then
    local parent = name:match("^[^.]+%.(.+)$")
    if parent then c = load_cert("*." .. parent) end
  end
  if c.chain and c.pkey then
    ssl.clear_certs()
    local ok, err = ssl.set_cert(c.chain)
    if ok then ok, err = ssl.set_priv_key(c.pkey) end
    if not ok then ngx.log(ngx.ERR, "gitpaas edge: certificate of ", name, ": ", err) end
  end
end

-- -- metrics ------------------------------------------------------------------------------

local function label(v)
  return (v:gsub("[\\\"\n]", function(ch) return ch == "\n" and "\\n" or "\\" .. ch end))
end

function M.metrics()
  flush_counts()
  local out = {"# TYPE gitpaas_edge_requests_total counter"}
  local errors = {"# TYPE gitpaas_edge_responses_5xx_total counter"}
  for _, key in ipairs(metrics:get_keys(0)) do
    local kind, app, code = key:match("^(%a)\t([^\t]*)\t?(%d*)$")
    local v = metrics:get(key)
    if kind == "r" then
      out[#out + 1] = format('gitpaas_edge_requests_total{app="%s",code="%s"} %d', label(app), code, v)
    elseif kind == "e" then
      errors[#errors + 1] = format('gitpaas_edge_responses_5xx_total{app="%s"} %d', label(app), v)
    end
  end
  out[#out + 1] = concat(errors, "\n")
  out[#out + 1] = "# TYPE gitpaas_edge_cached_routes gauge"
  out[#out + 1] = "gitpaas_edge_cached_routes " .. #routes:get_keys(0)
  out[#out + 1] = "# TYPE gitpaas_edge_redis_subscribed gauge"
  out[#out + 1] = "gitpaas_edge_redis_subscribed " .. (state:get("subscribed") and 1 or 0)
  -- this worker's Lua heap (what its garbage collector walks)
  out[#out + 1] = "# TYPE gitpaas_edge_tls_names_cached gauge"
  out[#out + 1] = format("gitpaas_edge_tls_names_cached %d", certs:count() + misses:count())
  out[#out + 1] = "# TYPE gitpaas_edge_lua_memory_bytes gauge"
  out[#out + 1] = format("gitpaas_edge_lua_memory_bytes %d", collectgarbage("count") * 1024)
  ngx.header["Content-Type"] = "text/plain; version=0.0.4"
  ngx.print(concat(out, "\n"), "\n")
end

-- -- pub/sub: invalidation ----------------------------------------------------------------

local function invalidate(names)
  state:incr("gen", 1, 0)
  l1, l1_n = {}, 0  -- this worker at once (the others at their next tick)
  slot_gen, slot_n = slot_gen + 1, 0
  for name in gmatch(names, "%S+") do
    name = lower(name)
    if name == "*" then
      routes:flush_all()
    elseif sub(name, 1, 2) == "*." then
      local suffix = sub(name, 2)
      local n = #suffix
      for _, key in ipairs(routes:get_keys(0)) do
        if #key > n and sub(key, -n) == suffix then routes:delete(key) end
      end
    else
      routes:delete(name)
    end
  end
end
M.invalidate = invalidate

local subscriber

-- Keyspace notifications: a frontend or dead mark that any tool writes (Hipache's own, a
-- script, another edge), published or not, invalidates that host at once. Redis sends
-- them only with the K (keyspace), g (DEL, EXPIRE, RENAME), l (lists) and s (sets) flags
-- of notify-keyspace-events, which is off by default: add what is missing, keeping the
-- flags already set. Redis forgets it on restart; this runs at every (re)subscribe.
local KEYSPACE_FLAGS = "Kgls"

local function keyspace_events(sock)
  sock:send(resp.encode({"CONFIG", "GET", "notify-keyspace-events"}))
  local v, e = resp.read_reply(sock)
  if type(v) ~= "table" or type(v[2]) ~= "string" then
    return nil, e or "CONFIG GET refused"
  end
  local flags, missing = v[2], ""
  for c in gmatch(KEYSPACE_FLAGS, ".") do
    if not find(flags, c, 1, true) and not (c ~= "K" and find(flags, "A", 1, true)) then
      missing = missing .. c
    end
  end
  if missing == "" then return true end
  sock:send(resp.encode({"CONFIG", "SET", "notify-keyspace-events", flags .. missing}))
  v, e = resp.read_reply(sock)
  if v ~= "OK" then return nil, e or "CONFIG SET refused" end
  return true
end

local function subscribe_loop()
  local sock, err = resp.connect(conf, 1000)
  if not sock then return err end
  local chan_routes, chan_certs = conf.prefix .. "routes", conf.prefix .. "certs"
  local keyspace = "__keyspace@" .. conf.redis_db .. "__:" .. conf.prefix
  local ok, kerr = keyspace_events(sock)
  if not ok then
    ngx.log(ngx.WARN, "gitpaas edge: no keyspace notifications (", kerr, "): frontends "
            .. "written without a publish are seen when their cache entry expires")
  end
  local glob = gsub(keyspace, "[%*%?%[%]\\]", "\\%0")
  sock:send(resp.encode({"SUBSCRIBE", chan_routes, chan_certs}))
  sock:send(resp.encode({"PSUBSCRIBE", glob .. "frontend:*", glob .. "dead:*"}))
  for _ = 1, 4 do
    local v, e = resp.read_reply(sock)
    if not v then sock:close() return e end
  end
  -- messages may have been lost while nobody listened: everything cached becomes stale
  state:set("epoch", ngx.now())
  state:incr("gen", 1, 0)
  state:incr("cert_epoch", 1, 0)
  state:set("subscribed", true)
  state:set("subscribed_at", ngx.now())
  sock:settimeout(1000)
  while not ngx.worker.exiting() do
    local msg, e = resp.read_reply(sock)
    if msg then
      if type(msg) == "table" and msg[1] == "message" then
        if msg[2] == chan_routes then invalidate(msg[3])
        elseif msg[2] == chan_certs then state:incr("cert_epoch", 1, 0) end
      elseif type(msg) == "table" and msg[1] == "pmessage" and type(msg[3]) == "string" then
        local key = sub(msg[3], #keyspace + 1)  -- frontend:<host> or dead:<host>
        local host = key:match("^frontend:(%S+)$") or key:match("^dead:(%S+)$")
        if host then invalidate(host) end
      end
    elseif e ~= "timeout" then
      sock:close()
      state:delete("subscribed")
      return e
    end
  end
  sock:close()
end

subscriber = function(premature, backoff)
  if premature or ngx.worker.exiting() then return end
  local err = subscribe_loop()
  if ngx.worker.exiting() then return end
  if err then ngx.log(ngx.WARN, "gitpaas edge: pub/sub: ", err) end
  if ngx.now() - (state:get("subscribed_at") or 0) > 5 then backoff = nil end
  backoff = math.min((backoff or 0.025) * 2, 1)
  ngx.timer.at(backoff, subscriber, backoff)
end

function M.init_worker()
  math.randomseed(ngx.now() * 1000 + ngx.worker.pid())
  if ngx.worker.id() == 0 then ngx.timer.at(0, subscriber) end
  ngx.timer.every(1, flush_timer)  -- also runs (premature) at exit
end

return M
