//! TODO: heartbeat
