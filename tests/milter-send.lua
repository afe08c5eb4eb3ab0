-- milter-send.lua: send one RFC 5322 file through a milter with miltertest
-- and check the verdict and that nothing was modified.
--   miltertest -D sock=inet:PORT@127.0.0.1 -D file=MSG.eml [-D from=ADDR]
--              [-D rcpt=ADDR] [-D expect=accept|tempfail] -s milter-send.lua
-- Exit status 0 when the milter answered as expected and changed nothing.

local f = assert(io.open(file, "rb"))
local data = f:read("*a")
f:close()
data = data:gsub("\r\n", "\n")

local sep = data:find("\n\n", 1, true)
local head, body
if sep then
	head = data:sub(1, sep)
	body = data:sub(sep + 2)
else
	head, body = data, ""
end

local conn = mt.connect(sock, 40, 0.25)
if conn == nil then error("cannot connect to " .. sock) end
if mt.conninfo(conn, "client.example.org", "192.0.2.1") ~= nil then error("conninfo failed") end
if mt.mailfrom(conn, from or "sender@example.org") ~= nil then error("mailfrom failed") end
if mt.rcptto(conn, rcpt or "rcpt@example.org") ~= nil then error("rcptto failed") end

local name, value
local function flush()
	if name then
		if mt.header(conn, name, value) ~= nil then error("header failed") end
	end
	name, value = nil, nil
end
for line in head:gmatch("([^\n]*)\n") do
	if line:match("^[ \t]") and name then
		value = value .. "\r\n" .. line
	else
		flush()
		local n, v = line:match("^([^:]+):[ \t]?(.*)$")
		if n then name, value = n, v end
	end
end
flush()

local want = expect or "accept"
local r = mt.eoh(conn)
if r ~= nil then error("eoh failed") end
local early = mt.getreply(conn)
if early == SMFIR_ACCEPT then
	-- the milter needs no body for this message
else
	body = body:gsub("\n", "\r\n")
	local pos = 1
	local reply = nil
	while pos <= #body do
		local chunk = body:sub(pos, pos + 65000 - 1)
		if mt.bodystring(conn, chunk) ~= nil then error("body failed") end
		pos = pos + #chunk
		if mt.getreply(conn) == SMFIR_ACCEPT then
			-- accepted before the end: the milter wants nothing more
			reply = SMFIR_ACCEPT
			break
		end
	end
	if reply == nil then
		if mt.eom(conn) ~= nil then error("eom failed") end
		reply = mt.getreply(conn)
	end
	if want == "accept" and reply ~= SMFIR_ACCEPT and reply ~= SMFIR_CONTINUE then
		error("not accepted: reply " .. tostring(reply))
	end
	if want == "tempfail" and reply ~= SMFIR_TEMPFAIL and reply ~= SMFIR_REPLYCODE then
		error("not temporarily failed: reply " .. tostring(reply))
	end
	if mt.eom_check(conn, MT_HDRINSERT) or mt.eom_check(conn, MT_HDRADD) or
	    mt.eom_check(conn, MT_HDRCHANGE) or mt.eom_check(conn, MT_HDRDELETE) or
	    mt.eom_check(conn, MT_BODYCHANGE) or mt.eom_check(conn, MT_QUARANTINE) then
		error("the milter modified the message")
	end
end
mt.disconnect(conn)
