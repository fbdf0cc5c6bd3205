//! The credential of a device that runs no agent (a phone with the stock WireGuard app): a
//! wg-quick configuration with its private key and every member that can be reached as a peer.

use wiremesh_core::config::Addresses;
use wiremesh_core::keys::WireguardSecret;
use wiremesh_core::netmap::{Flags, Member};

/// Keeps the device's NAT mapping open; a phone is nearly always behind NAT.
const KEEPALIVE_SECONDS: u16 = 25;

/// The wg-quick text for device `name` holding `secret` at `addresses`, with `members` (the
/// netmap's members) as peers. Revoked members and other devices are left out: the first must not
/// be reached, the second cannot be (a device has no endpoint).
pub fn wg_quick(
    instance: &str,
    name: &str,
    secret: &WireguardSecret,
    addresses: Addresses,
    members: &[Member],
) -> String {
    let mut text = String::new();
    let mut line = |s: String| {
        text.push_str(&s);
        text.push('\n');
    };
    line(format!(
        "# wiremesh device {name:?} of instance {instance:?}. Keep it secret: it holds the private key."
    ));
    line("[Interface]".into());
    line(format!("PrivateKey = {}", secret.to_base64().as_str()));
    let mut own = Vec::new();
    if let Some(v4) = addresses.ipv4 {
        own.push(format!("{v4}/32"));
    }
    own.push(format!("{}/128", addresses.ipv6));
    line(format!("Address = {}", own.join(", ")));
    let own_key = secret.public_key();
    for m in members.iter().filter(|m| {
        m.wireguard_public_key != own_key
            && !m.flags.contains(Flags::REVOKED)
            && !(m.flags.contains(Flags::OUTSIDE_INVENTORY) && m.endpoints.is_empty())
    }) {
        line(String::new());
        line(format!("# {}", m.name.escape_debug()));
        line("[Peer]".into());
        line(format!("PublicKey = {}", m.wireguard_public_key));
        let mut allowed: Vec<String> = Vec::new();
        if let Some(v4) = m.addresses.ipv4 {
            allowed.push(format!("{v4}/32"));
        }
        allowed.push(format!("{}/128", m.addresses.ipv6));
        allowed.extend(m.routes.iter().map(|r| r.to_string()));
        line(format!("AllowedIPs = {}", allowed.join(", ")));
        if let Some(endpoint) = m.endpoints.first() {
            line(format!("Endpoint = {endpoint}"));
        }
        line(format!("PersistentKeepalive = {KEEPALIVE_SECONDS}"));
    }
    text
}
