//! `swarmlet peer`: one long-running peer in many swarms at once. The session owns the
//! torrents; one listener routes each incoming connection by its handshake's infohash
//! (or answers it as the built-in HTTP tracker); the HTTP API ([`api`]) reads and
//! steers the session through the [`control::Control`] trait only.

pub mod control;
