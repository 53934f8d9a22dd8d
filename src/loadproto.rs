//! TODO: loadproto
