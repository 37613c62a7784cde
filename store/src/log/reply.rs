//! Decoding of Redis replies into log types, without copying entry payloads, and the errors of failed calls.

use bytes::Bytes;
use crier_proto::StreamId;
use crier_proto::keys::ENTRY_FIELD;
use redis::Value;

use super::{Entry, LogError};

/// The error of a Redis call that did not answer within its bound.
pub fn timed_out(what: &str) -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{what} timed out")))
}

/// A `LogError::Protocol` describing `value`.
pub fn protocol(partition: u32, value: &impl std::fmt::Debug) -> LogError {
    LogError::Protocol { partition, detail: format!("{value:?}") }
}

/// A bulk or simple string as `&str`.
pub fn text(value: &Value) -> Option<&str> {
    match value {
        Value::BulkString(b) => std::str::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s.as_str()),
        _ => None,
    }
}

/// A stream id reply.
pub fn stream_id(partition: u32, value: &Value) -> Result<StreamId, LogError> {
    text(value).and_then(|t| t.parse().ok()).ok_or_else(|| protocol(partition, value))
}

/// An epoch reply (hex).
pub fn epoch(partition: u32, value: &Value) -> Result<u64, LogError> {
    text(value).and_then(|t| u64::from_str_radix(t, 16).ok()).ok_or_else(|| protocol(partition, value))
}

/// An array reply's items.
pub fn array(partition: u32, value: Value) -> Result<Vec<Value>, LogError> {
    match value {
        Value::Array(items) => Ok(items),
        Value::Nil => Ok(Vec::new()),
        other => Err(protocol(partition, &other)),
    }
}

/// `[[id, [field, value, ...]], ...]` → entries carrying the `ENTRY_FIELD` value.
pub fn entries(partition: u32, value: Value) -> Result<Vec<Entry>, LogError> {
    array(partition, value)?.into_iter().map(|item| entry(partition, item)).collect()
}

fn entry(partition: u32, item: Value) -> Result<Entry, LogError> {
    let mut pair = array(partition, item)?;
    let (Some(fields), Some(id)) = (pair.pop(), pair.pop()) else {
        return Err(protocol(partition, &pair));
    };
    let id = stream_id(partition, &id)?;
    let mut fields = array(partition, fields)?.into_iter();
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        if matches!(&name, Value::BulkString(n) if n == ENTRY_FIELD.as_bytes())
            && let Value::BulkString(data) = value
        {
            return Ok(Entry { id, data: Bytes::from(data) });
        }
    }
    Err(LogError::Protocol { partition, detail: format!("entry {id} has no field {ENTRY_FIELD:?}") })
}

/// The entries of an `XREAD` reply for one stream (RESP2 array or RESP3 map).
pub fn xread(partition: u32, reply: Value) -> Result<Vec<Entry>, LogError> {
    match reply {
        Value::Nil => Ok(Vec::new()),
        Value::Array(mut streams) if streams.len() == 1 => {
            let mut pair = array(partition, streams.pop().unwrap_or(Value::Nil))?;
            match (pair.pop(), pair.len()) {
                (Some(items), 1) => entries(partition, items),
                _ => Err(protocol(partition, &pair)),
            }
        }
        Value::Map(mut streams) if streams.len() == 1 => match streams.pop() {
            Some((_, items)) => entries(partition, items),
            None => Ok(Vec::new()),
        },
        other => Err(protocol(partition, &other)),
    }
}
