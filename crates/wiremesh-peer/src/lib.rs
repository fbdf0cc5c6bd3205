//! The peer agent: one WireGuard session per mesh member over one TUN device and one UDP socket.
