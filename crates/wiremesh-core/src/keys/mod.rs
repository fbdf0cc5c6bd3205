//! Keys: the x25519 WireGuard key, the ed25519 node key and the ed25519 network key.
//!
//! Public keys are plain 32-byte newtypes that print and parse as standard base64 (the `wg` format)
//! and serialise as base64 strings in JSON but as raw bytes in postcard. Secrets wrap the dalek
//! types, which zeroise on drop; their `Debug` never shows key material. The text file formats of
//! the machine identity and of the network key live in [`file`].

mod file;

pub use file::{
    Identity, KeyFile, KeyFileError, KeyFileProblem, MAX_KEY_FILE_BYTES, NetworkKey, mode_warning,
    permission_warning,
};
use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::{Zeroize, Zeroizing};

/// Length in bytes of every key this crate handles (x25519 and ed25519 alike).
pub const KEY_LEN: usize = 32;

/// Why a base64 key text is not a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyParseError {
    #[error("empty (expected 44 characters of standard base64)")]
    Empty,
    #[error("not valid standard base64 (expected 44 characters of A-Z a-z 0-9 + / ending in '=')")]
    BadBase64,
    #[error("decodes to {0} bytes, expected {KEY_LEN}")]
    WrongLength(usize),
}

/// Decodes standard base64 into exactly 32 bytes; the buffer is zeroised when dropped because the
/// same path decodes secrets.
pub(crate) fn decode_key_base64(text: &str) -> Result<Zeroizing<[u8; KEY_LEN]>, KeyParseError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(KeyParseError::Empty);
    }
    let bytes = Zeroizing::new(BASE64.decode(text).map_err(|_| KeyParseError::BadBase64)?);
    let array: [u8; KEY_LEN] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| KeyParseError::WrongLength(bytes.len()))?;
    Ok(Zeroizing::new(array))
}

/// Random bytes from the operating system.
fn random_bytes() -> Result<Zeroizing<[u8; KEY_LEN]>, getrandom::Error> {
    let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
    getrandom::fill(bytes.as_mut())?;
    Ok(bytes)
}

macro_rules! public_key {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name([u8; KEY_LEN]);

        impl $name {
            pub const fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
                Self(bytes)
            }
            pub const fn as_bytes(&self) -> &[u8; KEY_LEN] {
                &self.0
            }
            pub fn to_base64(&self) -> String {
                BASE64.encode(self.0)
            }
        }

        impl FromStr for $name {
            type Err = KeyParseError;
            fn from_str(s: &str) -> Result<Self, KeyParseError> {
                decode_key_base64(s).map(|bytes| Self(*bytes))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_base64())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.to_base64())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.serialize_str(&self.to_base64())
                } else {
                    self.0.serialize(s)
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                if d.is_human_readable() {
                    let text = String::deserialize(d)?;
                    text.parse().map_err(|e: KeyParseError| {
                        serde::de::Error::custom(format!("public key {text:?}: {e}"))
                    })
                } else {
                    <[u8; KEY_LEN]>::deserialize(d).map(Self)
                }
            }
        }
    };
}

public_key!(
    /// A WireGuard (x25519) public key.
    WireguardPublicKey
);
public_key!(
    /// A member's ed25519 node public key: authenticates it on the control channel.
    NodePublicKey
);
public_key!(
    /// The ed25519 network public key that every agent pins; netmaps are signed with its secret.
    NetworkPublicKey
);

/// An ed25519 signature (64 bytes).
pub type Signature = ed25519_dalek::Signature;

/// Why a signature does not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the public key is not a valid ed25519 point")]
    BadPublicKey,
    #[error("the signature does not match")]
    BadSignature,
}

fn verify_ed25519(
    public: &[u8; KEY_LEN],
    message: &[u8],
    sig: &Signature,
) -> Result<(), VerifyError> {
    let key = VerifyingKey::from_bytes(public).map_err(|_| VerifyError::BadPublicKey)?;
    key.verify_strict(message, sig)
        .map_err(|_| VerifyError::BadSignature)
}

impl NodePublicKey {
    /// Checks an ed25519 signature made by this node (strict: rejects malleable signatures).
    pub fn verify(&self, message: &[u8], sig: &Signature) -> Result<(), VerifyError> {
        verify_ed25519(&self.0, message, sig)
    }
}

impl NetworkPublicKey {
    /// Checks an ed25519 signature made with the network key (strict).
    pub fn verify(&self, message: &[u8], sig: &Signature) -> Result<(), VerifyError> {
        verify_ed25519(&self.0, message, sig)
    }
}

/// A WireGuard x25519 private key. Zeroised on drop; `Debug` is redacted.
#[derive(Clone)]
pub struct WireguardSecret(x25519_dalek::StaticSecret);

impl WireguardSecret {
    /// A new key from the OS random source, clamped the way `wg genkey` clamps it.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut bytes = random_bytes()?;
        bytes[0] &= 248;
        bytes[31] &= 127;
        bytes[31] |= 64;
        Ok(Self::from_bytes(*bytes))
    }
    /// The key from its 32 bytes; this copy of them is wiped once the key holds them.
    pub fn from_bytes(mut bytes: [u8; KEY_LEN]) -> Self {
        let secret = x25519_dalek::StaticSecret::from(bytes);
        bytes.zeroize();
        Self(secret)
    }
    /// The raw 32 bytes, e.g. for `boringtun::x25519::StaticSecret::from`.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        self.0.as_bytes()
    }
    pub fn public_key(&self) -> WireguardPublicKey {
        WireguardPublicKey(x25519_dalek::PublicKey::from(&self.0).to_bytes())
    }
    /// The `wg genkey` text of this key.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(BASE64.encode(self.as_bytes()))
    }
}

impl fmt::Debug for WireguardSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "WireguardSecret(<redacted>, public {})",
            self.public_key()
        )
    }
}

macro_rules! signing_secret {
    ($(#[$doc:meta])* $name:ident, $public:ident) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name(SigningKey);

        impl $name {
            /// A new key from the OS random source.
            pub fn generate() -> Result<Self, getrandom::Error> {
                Ok(Self::from_seed(*random_bytes()?))
            }
            /// The key from its 32-byte ed25519 seed.
            pub fn from_seed(seed: [u8; KEY_LEN]) -> Self {
                let seed = Zeroizing::new(seed);
                Self(SigningKey::from_bytes(&seed))
            }
            /// The raw 32-byte seed.
            pub fn seed_bytes(&self) -> &[u8; KEY_LEN] {
                self.0.as_bytes()
            }
            pub fn public_key(&self) -> $public {
                $public(self.0.verifying_key().to_bytes())
            }
            pub fn sign(&self, message: &[u8]) -> Signature {
                self.0.sign(message)
            }
            /// The base64 text of the seed, as stored in key files.
            pub fn to_base64(&self) -> Zeroizing<String> {
                Zeroizing::new(BASE64.encode(self.seed_bytes()))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}(<redacted>, public {})", stringify!($name), self.public_key())
            }
        }
    };
}

signing_secret!(
    /// A member's ed25519 node private key. Zeroised on drop; `Debug` is redacted.
    NodeSecret,
    NodePublicKey
);
signing_secret!(
    /// The ed25519 network private key, held by the controller. Zeroised on drop; `Debug` is redacted.
    NetworkSecret,
    NetworkPublicKey
);

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7748 §6.1: Alice's private and public key. `wg pubkey` computes the same X25519 base
    /// point multiplication, so this pins our output to `wg`'s.
    #[test]
    fn wireguard_public_key_matches_rfc7748_vector() {
        let secret: [u8; 32] = [
            0x77, 0x07, 0x6d, 0x0a, 0x73, 0x18, 0xa5, 0x7d, 0x3c, 0x16, 0xc1, 0x72, 0x51, 0xb2,
            0x66, 0x45, 0xdf, 0x4c, 0x2f, 0x87, 0xeb, 0xc0, 0x99, 0x2a, 0xb1, 0x77, 0xfb, 0xa5,
            0x1d, 0xb9, 0x2c, 0x2a,
        ];
        let public = WireguardSecret::from_bytes(secret).public_key();
        assert_eq!(
            public.as_bytes(),
            &[
                0x85, 0x20, 0xf0, 0x09, 0x89, 0x30, 0xa7, 0x54, 0x74, 0x8b, 0x7d, 0xdc, 0xb4, 0x3e,
                0xf7, 0x5a, 0x0d, 0xbf, 0x3a, 0x0d, 0x26, 0x38, 0x1a, 0xf4, 0xeb, 0xa4, 0xa9, 0x8e,
                0xaa, 0x9b, 0x4e, 0x6a
            ]
        );
    }

    /// A pair produced by `wg genkey | tee priv | wg pubkey` (wireguard-tools v1.0.20210914), and
    /// the RFC vector's private key fed through `wg pubkey`.
    #[test]
    fn wireguard_public_key_matches_wg_pubkey() {
        for (private, public) in [
            (
                "iJ0LzaEth8stwToVq+6cDb07H2zgmV09g+9yOVBnjFc=",
                "sOsdVzmEMSWIVOpsVkP90WmKFT3u9XV20Hd8RFvphmM=",
            ),
            (
                "dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=",
                "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=",
            ),
        ] {
            let secret = WireguardSecret::from_bytes(*decode_key_base64(private).unwrap());
            assert_eq!(secret.public_key().to_base64(), public);
            assert_eq!(secret.to_base64().as_str(), private);
        }
    }

    #[test]
    fn generated_wireguard_key_is_clamped() {
        let key = WireguardSecret::generate().unwrap();
        let b = key.as_bytes();
        assert_eq!(b[0] & 7, 0);
        assert_eq!(b[31] & 0x80, 0);
        assert_eq!(b[31] & 0x40, 0x40);
    }

    #[test]
    fn debug_never_shows_secrets() {
        let wg = WireguardSecret::generate().unwrap();
        let node = NodeSecret::generate().unwrap();
        let net = NetworkSecret::generate().unwrap();
        for (dbg, secret) in [
            (format!("{wg:?}"), wg.to_base64()),
            (format!("{node:?}"), node.to_base64()),
            (format!("{net:?}"), net.to_base64()),
        ] {
            assert!(dbg.contains("<redacted>"), "{dbg}");
            assert!(!dbg.contains(secret.as_str()), "{dbg}");
        }
    }

    /// The dalek secret types wipe their memory on drop only with their `zeroize` features; this
    /// stops compiling if a dependency change turns them off.
    #[test]
    fn secrets_zeroize_on_drop() {
        fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>() {}
        wiped_on_drop::<x25519_dalek::StaticSecret>();
        wiped_on_drop::<SigningKey>();
    }

    #[test]
    fn key_files_debug_without_secrets() {
        let id = Identity::generate().unwrap();
        let net = NetworkKey::generate().unwrap();
        let dbg = format!("{id:?} {net:?}");
        for secret in [
            id.wireguard_secret().to_base64(),
            id.node_secret().to_base64(),
            net.secret().to_base64(),
        ] {
            assert!(!dbg.contains(secret.as_str()), "{dbg}");
        }
        assert_eq!(dbg.matches("<redacted>").count(), 3, "{dbg}");
    }

    #[test]
    fn signatures_verify_and_reject_other_messages() {
        let key = NetworkSecret::generate().unwrap();
        let sig = key.sign(b"epoch 1");
        assert_eq!(key.public_key().verify(b"epoch 1", &sig), Ok(()));
        assert_eq!(
            key.public_key().verify(b"epoch 2", &sig),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn public_keys_round_trip_base64_and_reject_bad_text() {
        let key = NodeSecret::generate().unwrap().public_key();
        assert_eq!(key.to_base64().parse::<NodePublicKey>(), Ok(key));
        assert_eq!(
            "not base64!".parse::<NodePublicKey>(),
            Err(KeyParseError::BadBase64)
        );
        assert_eq!(
            "AAAA".parse::<NodePublicKey>(),
            Err(KeyParseError::WrongLength(3))
        );
        assert_eq!(" \n".parse::<NodePublicKey>(), Err(KeyParseError::Empty));
    }
}
