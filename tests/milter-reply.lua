-- milter-reply.lua: send one RFC 5322 file to the enroll address through a
-- milter with miltertest and check the verdict at end of message.
--   miltertest -D sock=inet:PORT@127.0.0.1 -D file=MSG.eml [-D from=ADDR]
--              [-D rcpt=ADDR[,ADDR...]] [-D auth=LOGIN] [-D qid=ID]
--              [-D expect=accept|discard|reject|tempfail]
--              [-D deleted=ADDR|none] [-D code=550 -D xcode=5.7.0 -D text=T]
--              -s milter-reply.lua
-- Prints "reply: NAME" and "deleted: ADDR" lines; exits 0 when the milter
-- answered as expected (and removed exactly DELETED, when given; and
-- set exactly the SMTP reply CODE XCODE TEXT, when given: miltertest 1.6
-- can only compare all three). miltertest does not print Lua errors, so
-- failures are written to stderr first.

local function fail(msg)
	io.stderr:write("milter-reply.lua: " .. msg .. "\n")
	error(msg)
end

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

local rcpts = {}
for r in string.gmatch(rcpt or "kms-enroll@example.org", "[^,]+") do
	table.insert(rcpts, r)
end

local conn = mt.connect(sock, 40, 0.25)
if conn == nil then fail("cannot connect to " .. sock) end
if mt.conninfo(conn, "client.example.org", "192.0.2.1") ~= nil then fail("conninfo failed") end
mt.macro(conn, SMFIC_MAIL, "i", qid or "4ReplyQ1d")
if auth then
	mt.macro(conn, SMFIC_MAIL, "i", qid or "4ReplyQ1d", "{auth_authen}", auth)
end
if mt.mailfrom(conn, from or "sender@example.org") ~= nil then fail("mailfrom failed") end
for _, r in ipairs(rcpts) do
	if mt.rcptto(conn, r) ~= nil then fail("rcptto failed") end
end

local name, value
local function flush()
	if name then
		if mt.header(conn, name, value) ~= nil then fail("header failed") end
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

local names = {
	[SMFIR_ACCEPT] = "accept", [SMFIR_CONTINUE] = "continue",
	[SMFIR_DISCARD] = "discard", [SMFIR_REJECT] = "reject",
	[SMFIR_TEMPFAIL] = "tempfail", [SMFIR_REPLYCODE] = "replycode",
}
if mt.eoh(conn) ~= nil then fail("eoh failed") end
local reply = mt.getreply(conn)
if reply == SMFIR_ACCEPT then
	print("reply: early-accept")
	if expect then fail("accepted at end of headers") end
	mt.disconnect(conn)
	return
end
body = body:gsub("\n", "\r\n")
local pos = 1
while pos <= #body do
	local chunk = body:sub(pos, pos + 65000 - 1)
	if mt.bodystring(conn, chunk) ~= nil then fail("body failed") end
	pos = pos + #chunk
	reply = mt.getreply(conn)
	if reply ~= SMFIR_CONTINUE and reply ~= 0 then
		break
	end
end
if pos > #body then
	if mt.eom(conn) ~= nil then fail("eom failed") end
	reply = mt.getreply(conn)
end
local got = names[reply] or tostring(reply)
print("reply: " .. got)
for _, r in ipairs(rcpts) do
	if mt.eom_check(conn, MT_RCPTDELETE, r) then print("deleted: " .. r) end
end

local want = expect or "accept"
local ok
if want == "accept" then
	ok = reply == SMFIR_ACCEPT or reply == SMFIR_CONTINUE
elseif want == "discard" then
	ok = reply == SMFIR_DISCARD
elseif want == "reject" then
	ok = reply == SMFIR_REJECT or reply == SMFIR_REPLYCODE
elseif want == "tempfail" then
	ok = reply == SMFIR_TEMPFAIL or reply == SMFIR_REPLYCODE
end
if not ok then fail("want " .. want .. ", got " .. got) end
if deleted then
	if deleted == "none" then
		for _, r in ipairs(rcpts) do
			if mt.eom_check(conn, MT_RCPTDELETE, r) then fail(r .. " was removed") end
		end
	elseif not mt.eom_check(conn, MT_RCPTDELETE, deleted) then
		fail(deleted .. " was not removed")
	end
end
if code then
	if not mt.eom_check(conn, MT_SMTPREPLY, code, xcode or "", text or "") then
		fail("no SMTP reply " .. code .. " " .. (xcode or "") .. " " .. (text or ""))
	end
end
if mt.eom_check(conn, MT_HDRINSERT) or mt.eom_check(conn, MT_HDRADD) or
    mt.eom_check(conn, MT_HDRCHANGE) or mt.eom_check(conn, MT_HDRDELETE) or
    mt.eom_check(conn, MT_BODYCHANGE) then
	fail("the milter modified the message")
end
mt.disconnect(conn)
