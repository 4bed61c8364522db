//! The Lua scripts that change a job's state. Each runs atomically in Redis, so a job's hash, its events and
//! its stream entry never disagree, whichever gateway or worker runs them and whenever one of them dies.
//!
//! Fencing: a worker writes a job's events and outcome only while the job's `attempts` still equals the
//! attempt it started; once another worker has claimed the job (a higher attempt), the first one's writes
//! are refused. So each job has exactly one outcome, written once.

use std::sync::LazyLock;

use redis::Script;

/// Queues a job unless the model's waiting jobs (stream length minus entries being run) reach the bound.
/// KEYS: stream, job, events, index. ARGV: id, max_queue, request, operation, now_ms, model, active_ttl_ms,
/// seeds, width, height. Returns the job's position, or -1 when the queue is full.
pub static SUBMIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local pending = 0
local info = redis.pcall('XPENDING', KEYS[1], 'workers')
if type(info) == 'table' and type(info[1]) == 'number' then pending = info[1] end
local waiting = redis.call('XLEN', KEYS[1]) - pending
if waiting < 0 then waiting = 0 end
if waiting >= tonumber(ARGV[2]) then return -1 end
local entry = redis.call('XADD', KEYS[1], '*', 'job', ARGV[1])
redis.call('HSET', KEYS[2], 'id', ARGV[1], 'model', ARGV[6], 'status', 'queued', 'entry', entry,
  'request', ARGV[3], 'operation', ARGV[4], 'seeds', ARGV[8], 'width', ARGV[9], 'height', ARGV[10],
  'created_ms', ARGV[5], 'attempts', 0)
redis.call('PEXPIRE', KEYS[2], ARGV[7])
local position = waiting + 1
redis.call('XADD', KEYS[3], '*', 'e', '{"type":"queued","position":' .. position .. '}')
redis.call('PEXPIRE', KEYS[3], ARGV[7])
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[1])
return position
"#,
    )
});

/// A worker takes a job it read or claimed from the stream. KEYS: job, events, stream, cancel.
/// ARGV: entry, worker, now_ms, max_attempts, result_ttl_ms.
/// Returns `{'run', attempt, request, created_ms}`, or `{'skip'}` (finished, cancelled or expired: the entry
/// is acknowledged) or `{'poison'}` (too many attempts: the job failed).
pub static START: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local function done()
  redis.call('XACK', KEYS[3], 'workers', ARGV[1])
  redis.call('XDEL', KEYS[3], ARGV[1])
end
local status = redis.call('HGET', KEYS[1], 'status')
if (not status) or (status ~= 'queued' and status ~= 'running') then
  done()
  return {'skip'}
end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
if attempts > tonumber(ARGV[4]) then
  local message = 'the job was started ' .. (attempts - 1) .. ' times and its worker never finished it '
    .. '(the worker crashed or was killed each time); it is not retried again'
  redis.call('HSET', KEYS[1], 'status', 'failed', 'finished_ms', ARGV[3],
    'error', cjson.encode({code = 'job_poisoned', message = message}))
  redis.call('HDEL', KEYS[1], 'request')
  redis.call('XADD', KEYS[2], '*', 'e', cjson.encode({type = 'error', code = 'job_poisoned', message = message}))
  for _, key in ipairs({KEYS[1], KEYS[2], KEYS[4]}) do redis.call('PEXPIRE', key, ARGV[5]) end
  done()
  return {'poison'}
end
redis.call('HSET', KEYS[1], 'status', 'running', 'started_ms', ARGV[3], 'worker', ARGV[2])
redis.call('XADD', KEYS[2], '*', 'e', '{"type":"started"}')
return {'run', tostring(attempts), redis.call('HGET', KEYS[1], 'request'), redis.call('HGET', KEYS[1], 'created_ms')}
"#,
    )
});

/// Appends a progress or preview event while the worker still owns the job. KEYS: job, events.
/// ARGV: attempt, event JSON, progress JSON or ''. Returns 1, or 0 when the job is no longer this attempt's.
pub static EVENT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('HGET', KEYS[1], 'status') ~= 'running' or redis.call('HGET', KEYS[1], 'attempts') ~= ARGV[1] then
  return 0
end
redis.call('XADD', KEYS[2], '*', 'e', ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'progress', ARGV[3]) end
return 1
"#,
    )
});

/// Writes a job's outcome, its terminal event, starts the result TTL and acknowledges the stream entry.
/// KEYS: job, events, stream, cancel. ARGV: attempt, entry, event JSON, result_ttl_ms, then field/value pairs.
/// Returns 1, or 0 when another attempt owns the job (nothing written).
pub static FINISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  redis.call('XACK', KEYS[3], 'workers', ARGV[2])
  redis.call('XDEL', KEYS[3], ARGV[2])
  return 0
end
if status ~= 'running' or redis.call('HGET', KEYS[1], 'attempts') ~= ARGV[1] then return 0 end
local fields = {}
for i = 5, #ARGV do fields[#fields + 1] = ARGV[i] end
if #fields > 0 then redis.call('HSET', KEYS[1], unpack(fields)) end
redis.call('HDEL', KEYS[1], 'request')
redis.call('XADD', KEYS[2], '*', 'e', ARGV[3])
for _, key in ipairs({KEYS[1], KEYS[2], KEYS[4]}) do redis.call('PEXPIRE', key, ARGV[4]) end
redis.call('XACK', KEYS[3], 'workers', ARGV[2])
redis.call('XDEL', KEYS[3], ARGV[2])
return 1
"#,
    )
});

/// Cancels a waiting job at once (its entry leaves the stream) or flags a running one. KEYS: job, events,
/// cancel. ARGV: now_ms, result_ttl_ms, active_ttl_ms. Returns `now:cancelled`, `now:cancelling`, `missing`,
/// or the finished job's status.
pub static CANCEL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'missing' end
if status == 'queued' then
  local model = redis.call('HGET', KEYS[1], 'model')
  local entry = redis.call('HGET', KEYS[1], 'entry')
  if model and entry then redis.call('XDEL', 'sd:jobs:' .. model, entry) end
  redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished_ms', ARGV[1])
  redis.call('HDEL', KEYS[1], 'request')
  redis.call('XADD', KEYS[2], '*', 'e', '{"type":"cancelled"}')
  for _, key in ipairs({KEYS[1], KEYS[2]}) do redis.call('PEXPIRE', key, ARGV[2]) end
  return 'now:cancelled'
end
if status == 'running' then
  redis.call('SET', KEYS[3], '1', 'PX', ARGV[3])
  return 'now:cancelling'
end
return status
"#,
    )
});

/// How many entries wait before `entry` and were not yet handed to a worker (1 = next). KEYS: stream.
/// ARGV: entry.
pub static POSITION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local last = '0-0'
local groups = redis.pcall('XINFO', 'GROUPS', KEYS[1])
if type(groups) == 'table' and not groups.err then
  for _, group in ipairs(groups) do
    local name, delivered
    for i = 1, #group, 2 do
      if group[i] == 'name' then name = group[i + 1] elseif group[i] == 'last-delivered-id' then delivered = group[i + 1] end
    end
    if name == 'workers' and delivered then last = delivered end
  end
end
local ahead = redis.call('XRANGE', KEYS[1], '(' .. last, ARGV[1])
return #ahead
"#,
    )
});
