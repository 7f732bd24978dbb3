"""Hold the store's Lua scripts: each does a whole step of a job's life in one round trip.

They assume one Redis (not a cluster): some keys they touch are passed in ARGV or are fixed.
"""

# Save a job if nobody changed it since we read it, keep the indexes in step, and log the
# state change in the job's event stream.
# KEYS[1] job hash, KEYS[2] queued zset of its queue, KEYS[3] queued zset of its model,
# KEYS[4] running set of its model, KEYS[5] owner's job index (zset), KEYS[6] counters hash,
# KEYS[7] final states per model (hash), KEYS[8] Idempotency-Key binding, KEYS[9] model's
# slot holders (zset), KEYS[10] the job's event stream, KEYS[11] queued zset of its model's
# interactive lane, KEYS[12] its batch's hash, KEYS[13] its model's held zset (jobs MES keeps
# back until a worker is free), KEYS[14] its batch's job list, KEYS[15] the active batches
# ARGV[1] version read ("" to create), ARGV[2] new status, ARGV[3] record JSON,
# ARGV[4] TTL seconds, ARGV[5] job id, ARGV[6] score (created, ms),
# ARGV[7] channel to publish the id on ("" unless the job became final), ARGV[8] model id,
# ARGV[9] on create: the model's queue limit ("" for none),
# ARGV[10] on create: "<body hash>" to bind KEYS[8] to ("" for no key),
# ARGV[11] a slot to take first: the model's concurrency limit ("" for none),
# ARGV[12] slot token, ARGV[13] now (ms), ARGV[14] slot TTL (ms),
# ARGV[15] the event stream's length cap ("" to log nothing), ARGV[16] "1" to log a restart
# first (a new attempt after one that may have streamed text), ARGV[17] the attempt number,
# ARGV[18] the error code the state carries ("" for none),
# ARGV[19] how many commands follow to run first, whatever the outcome (the last tokens,
#          releases), ARGV[20] how many follow those, to run after a successful save
#          (bookkeeping), ARGV[21] the job's lane (interactive or batch), ARGV[22] "1" if the
#          job belongs to a batch (a new one is held, not entered in its family's queue),
#          ARGV[23] now (s), ARGV[24] the batch's TTL once it ends (s);
#          ARGV[25] the batch's id, ARGV[26] "1" to hold a new job (the scheduler releases
#          it), ARGV[27] its held score; ARGV[28...] the commands, each as its word count and
#          its words;
#          the command DELIFEQ key value deletes key only if it holds value (a lease release).
# An interactive job's queue limit counts the interactive lane only, so batch work never
# locks interactive callers out; a batch-lane job's counts every queued job of the model.
# A batch job's save moves its batch's counts; the save that ends the batch's last job ends
# the batch (completed, cancelled or expired) and starts the batch's retention.
# Returns the new version, or -1 stale, -2 queue at its limit, -3 no free slot, or
# {-4, binding} when the Idempotency-Key is already bound. Counts only new jobs.
SAVE = """
local at = 28
local function run_some(count)
  for _ = 1, count do
    local n = tonumber(ARGV[at])
    local cmd = {}
    for i = 1, n do cmd[i] = ARGV[at + i] end
    at = at + n + 1
    if cmd[1] == 'DELIFEQ' then
      if redis.call('GET', cmd[2]) == cmd[3] then redis.call('DEL', cmd[2]) end
    else
      redis.call(unpack(cmd))
    end
  end
end
run_some(tonumber(ARGV[19]))
local current, old = unpack(redis.call('HMGET', KEYS[1], 'version', 'status'))
if ARGV[1] == '' then
  if current then return -1 end
  if ARGV[10] ~= '' then
    local bound = redis.call('GET', KEYS[8])
    if bound then return {-4, bound} end
  end
  local counted = KEYS[3]
  if ARGV[21] == 'interactive' then counted = KEYS[11] end
  if ARGV[9] ~= '' and redis.call('ZCARD', counted) >= tonumber(ARGV[9]) then return -2 end
elseif current ~= ARGV[1] then
  return -1
end
if ARGV[11] ~= '' then
  redis.call('ZREMRANGEBYSCORE', KEYS[9], '-inf', ARGV[13])
  if redis.call('ZCARD', KEYS[9]) >= tonumber(ARGV[11]) then return -3 end
  redis.call('ZADD', KEYS[9], tonumber(ARGV[13]) + tonumber(ARGV[14]), ARGV[12])
  redis.call('PEXPIRE', KEYS[9], ARGV[14])
end
local version = tonumber(current or '0') + 1
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'data', ARGV[3], 'version', version)
redis.call('EXPIRE', KEYS[1], ARGV[4])
if ARGV[2] == 'queued' then
  -- A batch's new job is held, not in its family's queue, until a release sends it.
  if ARGV[1] == '' and ARGV[26] == '1' then
    redis.call('ZADD', KEYS[13], ARGV[27], ARGV[5])
  elseif not (ARGV[1] == '' and ARGV[22] == '1') then
    redis.call('ZADD', KEYS[2], ARGV[6], ARGV[5])
  end
  redis.call('ZADD', KEYS[3], ARGV[6], ARGV[5])
  if ARGV[21] == 'interactive' then redis.call('ZADD', KEYS[11], ARGV[6], ARGV[5]) end
else
  redis.call('ZREM', KEYS[2], ARGV[5])
  redis.call('ZREM', KEYS[3], ARGV[5])
  redis.call('ZREM', KEYS[11], ARGV[5])
  redis.call('ZREM', KEYS[13], ARGV[5])
end
if ARGV[2] == 'running' then
  redis.call('SADD', KEYS[4], ARGV[5])
else
  redis.call('SREM', KEYS[4], ARGV[5])
end
if ARGV[1] == '' then
  redis.call('ZADD', KEYS[5], ARGV[6], ARGV[5])
  redis.call('EXPIRE', KEYS[5], ARGV[4])
  redis.call('HINCRBY', KEYS[6], 'jobs_submitted', 1)
  if ARGV[10] ~= '' then
    redis.call('SET', KEYS[8], ARGV[10] .. ':' .. ARGV[5], 'EX', ARGV[4])
  end
end
if ARGV[7] ~= '' then
  redis.call('PUBLISH', ARGV[7], ARGV[5])
  redis.call('HINCRBY', KEYS[6], 'jobs_' .. ARGV[2], 1)
  redis.call('HINCRBY', KEYS[7], ARGV[8] .. '|' .. ARGV[2], 1)
end
if ARGV[15] ~= '' then
  local cap = tonumber(ARGV[15])
  if ARGV[16] == '1' then
    redis.call('XADD', KEYS[10], 'MAXLEN', '~', cap, '*', 'type', 'restart',
               'data', '{"attempt":' .. ARGV[17] .. '}')
  end
  local event = '{"status":"' .. ARGV[2] .. '"'
  if ARGV[17] ~= '' then event = event .. ',"attempt":' .. ARGV[17] end
  if ARGV[2] == 'queued' then
    local rank = redis.call('ZRANK', KEYS[2], ARGV[5])
    if rank then event = event .. ',"position":' .. (rank + 1) end
  end
  if ARGV[18] ~= '' then event = event .. ',"error":"' .. ARGV[18] .. '"' end
  redis.call('XADD', KEYS[10], 'MAXLEN', '~', cap, '*', 'type', 'status', 'data', event .. '}')
  if ARGV[7] ~= '' then
    redis.call('XADD', KEYS[10], 'MAXLEN', '~', cap, '*', 'type', 'done', 'data', '{}')
  end
  redis.call('EXPIRE', KEYS[10], ARGV[4])
end
if ARGV[22] == '1' then
  if ARGV[1] == '' then
    redis.call('HINCRBY', KEYS[12], 'queued', 1)
  elseif old ~= ARGV[2] then
    redis.call('HINCRBY', KEYS[12], old, -1)
    redis.call('HINCRBY', KEYS[12], ARGV[2], 1)
  end
  if ARGV[2] == 'running' then redis.call('HSETNX', KEYS[12], 'started_at', ARGV[23]) end
  if ARGV[7] ~= '' and old ~= ARGV[2] then
    local c = redis.call('HMGET', KEYS[12], 'total', 'succeeded', 'failed', 'cancelled',
                         'expired', 'cancel_requested', 'finished_at')
    local ended = (tonumber(c[2]) or 0) + (tonumber(c[3]) or 0) + (tonumber(c[4]) or 0)
                  + (tonumber(c[5]) or 0)
    if c[1] and ended >= tonumber(c[1]) and not c[7] then
      local status = 'completed'
      if c[6] then status = 'cancelled' elseif (tonumber(c[5]) or 0) > 0 then status = 'expired' end
      redis.call('HSET', KEYS[12], 'status', status, 'finished_at', ARGV[23])
      redis.call('EXPIRE', KEYS[12], ARGV[24])
      redis.call('EXPIRE', KEYS[14], ARGV[24])
      redis.call('SREM', KEYS[15], ARGV[25])
    end
  end
end
run_some(tonumber(ARGV[20]))
return version
"""

# Create a chunk of one batch's new jobs in one call: for each job exactly what SAVE writes
# when it creates a batch job (its hash, its event stream's `queued` event, the model's queued
# index and interactive lane, the owner's index, the counters, the batch's queued count), plus
# what the batch's ingest adds (its held entry and its place in the batch's job list). One call
# for a few hundred jobs instead of one SAVE each: per-call overhead was most of the cost.
# KEYS[1] owner's job index (zset), KEYS[2] counters hash, KEYS[3] the batch's hash,
# KEYS[4] the batch's job list; then for each of the chunk's M models 3 keys: its queued zset,
# its interactive lane's queued zset, its held zset; then for each job 2 keys: its hash, its
# event stream
# ARGV[1] M, ARGV[2] how many jobs, ARGV[3] the event stream's length cap, ARGV[4] the job
# list's TTL (s); then for each job 8: id, record JSON, TTL (s), score (created, ms), held
# score, its model's number (1 to M), its lane (interactive or batch), its attempt number
# Returns 0, or the number (from 1) of the first job whose id is taken: then nothing is written.
# Each zset gets one ZADD per chunk; a chunk stays well under Lua's unpack limit (8,000).
CREATE_BATCH_JOBS = """
local models, count, cap = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local first_job = 4 + 3 * models
for j = 1, count do
  if redis.call('EXISTS', KEYS[first_job + 2 * j - 1]) == 1 then return j end
end
local queued, lane, held, owned, ids = {}, {}, {}, {}, {}
for m = 1, models do queued[m], lane[m], held[m] = {}, {}, {} end
local ttl
for j = 1, count do
  local a = 4 + 8 * (j - 1)
  local id, score, m = ARGV[a + 1], ARGV[a + 4], tonumber(ARGV[a + 6])
  local record, events = KEYS[first_job + 2 * j - 1], KEYS[first_job + 2 * j]
  ttl = ARGV[a + 3]
  redis.call('HSET', record, 'status', 'queued', 'data', ARGV[a + 2], 'version', '1')
  redis.call('EXPIRE', record, ttl)
  local q = queued[m]
  q[#q + 1] = score; q[#q + 1] = id
  if ARGV[a + 7] == 'interactive' then
    local l = lane[m]
    l[#l + 1] = score; l[#l + 1] = id
  end
  local h = held[m]
  h[#h + 1] = ARGV[a + 5]; h[#h + 1] = id
  owned[#owned + 1] = score; owned[#owned + 1] = id
  ids[j] = id
  redis.call('XADD', events, 'MAXLEN', '~', cap, '*', 'type', 'status',
             'data', '{"status":"queued","attempt":' .. ARGV[a + 8] .. '}')
  redis.call('EXPIRE', events, ttl)
end
for m = 1, models do
  local base = 4 + 3 * (m - 1)
  if #queued[m] > 0 then redis.call('ZADD', KEYS[base + 1], unpack(queued[m])) end
  if #lane[m] > 0 then redis.call('ZADD', KEYS[base + 2], unpack(lane[m])) end
  if #held[m] > 0 then redis.call('ZADD', KEYS[base + 3], unpack(held[m])) end
end
redis.call('ZADD', KEYS[1], unpack(owned))
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('HINCRBY', KEYS[2], 'jobs_submitted', ARGV[2])
redis.call('HINCRBY', KEYS[3], 'queued', ARGV[2])
redis.call('RPUSH', KEYS[4], unpack(ids))
redis.call('EXPIRE', KEYS[4], ARGV[4])
return 0
"""

# Take a job's lease and read the job and its backend's breaker, in one trip.
# KEYS[1] lease key, KEYS[2] job hash, KEYS[3] breaker hash, KEYS[4] cancel flag
# ARGV[1] our token, ARGV[2] lease TTL (ms)
# Returns {leased 0/1, record JSON or false, version or false, lease ms left,
#          failures or false, open_until or false, cancel flag or false}.
CLAIM = """
local leased = 0
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then leased = 1 end
local job = redis.call('HMGET', KEYS[2], 'data', 'version')
local breaker = redis.call('HMGET', KEYS[3], 'failures', 'open_until')
return {leased, job[1], job[2], redis.call('PTTL', KEYS[1]), breaker[1], breaker[2],
        redis.call('GET', KEYS[4])}
"""

# Renew only our own lease. KEYS[1] lease key; ARGV[1] our token, ARGV[2] TTL in ms.
RENEW_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# Release only our own lease. KEYS[1] lease key; ARGV[1] our token.
RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# Push a slot holder's expiry forward if it still holds a slot.
# KEYS[1] the model's holder zset; ARGV[1] token, ARGV[2] new expiry (ms), ARGV[3] TTL (ms)
RENEW_SLOT = """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], 'XX', ARGV[2], ARGV[1])
  if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[3]) then
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
  end
  return 1
end
return 0
"""
