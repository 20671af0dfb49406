//! The proxy's rustls `CryptoProvider`: rustls-rustcrypto, except that TLS record protection
//! (ChaCha20-Poly1305 and AES-128/256-GCM, TLS 1.3 and 1.2) is IronClaw's native
//! `aead_seal` / `aead_open`.
//!
//! Why: this module runs interpreted, and the record cipher was the proxy's cost per
//! streamed byte — 27–93 ns per byte for ChaCha20-Poly1305 in the interpreter, 170–200 for
//! AES-GCM, which held a streamed response to 10–30 MB/s (5 with AES-GCM). The shim computes
//! the same AEAD natively over the record in this module's memory, in place, at 2–7 ns per
//! byte (BENCHMARKS.md, the proxy section); the
//! key stays in enclave memory and nothing reaches the host. Everything else — key
//! exchange, hashes, HKDF and the TLS 1.2 PRF, certificate signatures, randomness — is
//! still rustls-rustcrypto's (the handshake is once per upstream connection).
//!
//! The suites are rustls-rustcrypto's own (same hash, HKDF/PRF, key exchange and signature
//! schemes) with only the AEAD replaced, in the order the client offers them:
//! ChaCha20-Poly1305 first (the faster AEAD without AES instructions).

use ironclaw_guest::{aead_open, aead_seal, Aead, AEAD_TAG_LEN};
use rustls::crypto::cipher::{
    make_tls12_aad, make_tls13_aad, AeadKey, InboundOpaqueMessage, InboundPlainMessage, Iv,
    KeyBlockShape, MessageDecrypter, MessageEncrypter, Nonce, OutboundOpaqueMessage,
    OutboundPlainMessage, PrefixedPayload, Tls12AeadAlgorithm, Tls13AeadAlgorithm,
    UnsupportedOperationError, NONCE_LEN,
};
use rustls::crypto::{CipherSuiteCommon, CryptoProvider};
use rustls::{
    ConnectionTrafficSecrets, ContentType, Error, ProtocolVersion, SupportedCipherSuite,
    Tls12CipherSuite, Tls13CipherSuite,
};

/// rustls-rustcrypto's provider with [`SUITES`] as its cipher suites.
pub(crate) fn provider() -> CryptoProvider {
    CryptoProvider {
        cipher_suites: SUITES.to_vec(),
        ..rustls_rustcrypto::provider()
    }
}

/// Every suite rustls-rustcrypto offers, with the native AEAD; ChaCha20-Poly1305 first.
static SUITES: &[SupportedCipherSuite] = &[
    SupportedCipherSuite::Tls13(&TLS13_CHACHA20_POLY1305_SHA256),
    SupportedCipherSuite::Tls12(&TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256),
    SupportedCipherSuite::Tls12(&TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256),
    SupportedCipherSuite::Tls13(&TLS13_AES_128_GCM_SHA256),
    SupportedCipherSuite::Tls13(&TLS13_AES_256_GCM_SHA384),
    SupportedCipherSuite::Tls12(&TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
    SupportedCipherSuite::Tls12(&TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384),
    SupportedCipherSuite::Tls12(&TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
    SupportedCipherSuite::Tls12(&TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384),
];

static CHACHA: Native = Native(Aead::ChaCha20Poly1305);
static AES128: Native = Native(Aead::Aes128Gcm);
static AES256: Native = Native(Aead::Aes256Gcm);

static TLS13_CHACHA20_POLY1305_SHA256: Tls13CipherSuite =
    tls13(rustls_rustcrypto::TLS13_CHACHA20_POLY1305_SHA256, &CHACHA);
static TLS13_AES_128_GCM_SHA256: Tls13CipherSuite =
    tls13(rustls_rustcrypto::TLS13_AES_128_GCM_SHA256, &AES128);
static TLS13_AES_256_GCM_SHA384: Tls13CipherSuite =
    tls13(rustls_rustcrypto::TLS13_AES_256_GCM_SHA384, &AES256);
static TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256: Tls12CipherSuite = tls12(
    rustls_rustcrypto::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    &CHACHA,
);
static TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256: Tls12CipherSuite = tls12(
    rustls_rustcrypto::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    &CHACHA,
);
static TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256: Tls12CipherSuite = tls12(
    rustls_rustcrypto::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    &AES128,
);
static TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384: Tls12CipherSuite = tls12(
    rustls_rustcrypto::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    &AES256,
);
static TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256: Tls12CipherSuite = tls12(
    rustls_rustcrypto::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    &AES128,
);
static TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384: Tls12CipherSuite = tls12(
    rustls_rustcrypto::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    &AES256,
);

const fn common(c: &CipherSuiteCommon) -> CipherSuiteCommon {
    CipherSuiteCommon {
        suite: c.suite,
        hash_provider: c.hash_provider,
        confidentiality_limit: c.confidentiality_limit,
    }
}

/// `base` with its AEAD replaced (evaluated at compile time: a wrong kind fails the build).
const fn tls13(
    base: SupportedCipherSuite,
    aead_alg: &'static dyn Tls13AeadAlgorithm,
) -> Tls13CipherSuite {
    let SupportedCipherSuite::Tls13(b) = base else {
        panic!("not a TLS 1.3 suite")
    };
    Tls13CipherSuite {
        common: common(&b.common),
        hkdf_provider: b.hkdf_provider,
        aead_alg,
        quic: None,
    }
}

/// `base` with its AEAD replaced (evaluated at compile time: a wrong kind fails the build).
const fn tls12(
    base: SupportedCipherSuite,
    aead_alg: &'static dyn Tls12AeadAlgorithm,
) -> Tls12CipherSuite {
    let SupportedCipherSuite::Tls12(b) = base else {
        panic!("not a TLS 1.2 suite")
    };
    Tls12CipherSuite {
        common: common(&b.common),
        prf_provider: b.prf_provider,
        kx: b.kx,
        sign: b.sign,
        aead_alg,
    }
}

/// Largest plaintext of a TLS record (RFC 8446 §5.1, RFC 5246 §6.2.1).
const MAX_FRAGMENT_LEN: usize = 16384;
/// TLS 1.2 AES-GCM: the record's explicit part of the nonce (RFC 5288 §3).
const GCM_EXPLICIT_NONCE_LEN: usize = 8;

/// One of the shim's AEADs as a rustls record algorithm.
struct Native(Aead);

impl Native {
    fn key_len(&self) -> usize {
        match self.0 {
            Aead::Aes128Gcm => 16,
            Aead::ChaCha20Poly1305 | Aead::Aes256Gcm => 32,
        }
    }

    fn secrets(&self, key: AeadKey, iv: Iv) -> ConnectionTrafficSecrets {
        match self.0 {
            Aead::ChaCha20Poly1305 => ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv },
            Aead::Aes128Gcm => ConnectionTrafficSecrets::Aes128Gcm { key, iv },
            Aead::Aes256Gcm => ConnectionTrafficSecrets::Aes256Gcm { key, iv },
        }
    }
}

impl Tls13AeadAlgorithm for Native {
    fn encrypter(&self, key: AeadKey, iv: Iv) -> Box<dyn MessageEncrypter> {
        Box::new(Tls13Cipher {
            alg: self.0,
            key,
            iv,
        })
    }

    fn decrypter(&self, key: AeadKey, iv: Iv) -> Box<dyn MessageDecrypter> {
        Box::new(Tls13Cipher {
            alg: self.0,
            key,
            iv,
        })
    }

    fn key_len(&self) -> usize {
        Native::key_len(self)
    }

    fn extract_keys(
        &self,
        key: AeadKey,
        iv: Iv,
    ) -> Result<ConnectionTrafficSecrets, UnsupportedOperationError> {
        Ok(self.secrets(key, iv))
    }
}

impl Tls12AeadAlgorithm for Native {
    fn encrypter(&self, key: AeadKey, iv: &[u8], extra: &[u8]) -> Box<dyn MessageEncrypter> {
        match self.0 {
            // RFC 7905: the whole 12-byte IV comes from the key block.
            Aead::ChaCha20Poly1305 => Box::new(Tls12ChaCha {
                key,
                iv: Iv::copy(iv),
            }),
            // RFC 5288: 4-byte salt from the key block, 8 random bytes as the explicit
            // nonce of the first record, then counted up by the sequence number.
            Aead::Aes128Gcm | Aead::Aes256Gcm => {
                let mut full = [0u8; NONCE_LEN];
                full[..4].copy_from_slice(iv);
                full[4..].copy_from_slice(extra);
                Box::new(Tls12GcmEncrypter {
                    alg: self.0,
                    key,
                    iv: Iv::new(full),
                })
            }
        }
    }

    fn decrypter(&self, key: AeadKey, iv: &[u8]) -> Box<dyn MessageDecrypter> {
        match self.0 {
            Aead::ChaCha20Poly1305 => Box::new(Tls12ChaCha {
                key,
                iv: Iv::copy(iv),
            }),
            Aead::Aes128Gcm | Aead::Aes256Gcm => {
                let mut salt = [0u8; 4];
                salt.copy_from_slice(iv);
                Box::new(Tls12GcmDecrypter {
                    alg: self.0,
                    key,
                    salt,
                })
            }
        }
    }

    fn key_block_shape(&self) -> KeyBlockShape {
        let (fixed_iv_len, explicit_nonce_len) = match self.0 {
            Aead::ChaCha20Poly1305 => (NONCE_LEN, 0),
            Aead::Aes128Gcm | Aead::Aes256Gcm => (4, GCM_EXPLICIT_NONCE_LEN),
        };
        KeyBlockShape {
            enc_key_len: self.key_len(),
            fixed_iv_len,
            explicit_nonce_len,
        }
    }

    fn extract_keys(
        &self,
        key: AeadKey,
        iv: &[u8],
        explicit: &[u8],
    ) -> Result<ConnectionTrafficSecrets, UnsupportedOperationError> {
        let mut full = [0u8; NONCE_LEN];
        match self.0 {
            Aead::ChaCha20Poly1305 => full.copy_from_slice(iv),
            Aead::Aes128Gcm | Aead::Aes256Gcm => {
                full[..4].copy_from_slice(iv);
                full[4..].copy_from_slice(explicit);
            }
        }
        Ok(self.secrets(key, Iv::new(full)))
    }
}

/// TLS 1.3 records (RFC 8446 §5.2): the inner content type after the plaintext, the record
/// header as the associated data.
struct Tls13Cipher {
    alg: Aead,
    key: AeadKey,
    iv: Iv,
}

impl MessageEncrypter for Tls13Cipher {
    fn encrypt(
        &mut self,
        m: OutboundPlainMessage<'_>,
        seq: u64,
    ) -> Result<OutboundOpaqueMessage, Error> {
        let total_len = self.encrypted_payload_len(m.payload.len());
        let mut payload = PrefixedPayload::with_capacity(total_len);
        payload.extend_from_chunks(&m.payload);
        payload.extend_from_slice(&m.typ.to_array());
        payload.extend_from_slice(&[0; AEAD_TAG_LEN]);
        let nonce = Nonce::new(&self.iv, seq).0;
        let aad = make_tls13_aad(total_len);
        aead_seal(self.alg, self.key.as_ref(), &nonce, &aad, payload.as_mut())
            .map_err(|_| Error::EncryptError)?;
        Ok(OutboundOpaqueMessage::new(
            ContentType::ApplicationData,
            ProtocolVersion::TLSv1_2,
            payload,
        ))
    }

    fn encrypted_payload_len(&self, payload_len: usize) -> usize {
        payload_len + 1 + AEAD_TAG_LEN
    }
}

impl MessageDecrypter for Tls13Cipher {
    fn decrypt<'a>(
        &mut self,
        mut m: InboundOpaqueMessage<'a>,
        seq: u64,
    ) -> Result<InboundPlainMessage<'a>, Error> {
        let payload = &mut m.payload;
        let nonce = Nonce::new(&self.iv, seq).0;
        let aad = make_tls13_aad(payload.len());
        let plain_len = aead_open(self.alg, self.key.as_ref(), &nonce, &aad, payload)
            .map_err(|_| Error::DecryptError)?;
        payload.truncate(plain_len);
        m.into_tls13_unpadded_message()
    }
}

/// TLS 1.2 ChaCha20-Poly1305 records (RFC 7905): no explicit nonce.
struct Tls12ChaCha {
    key: AeadKey,
    iv: Iv,
}

impl MessageEncrypter for Tls12ChaCha {
    fn encrypt(
        &mut self,
        m: OutboundPlainMessage<'_>,
        seq: u64,
    ) -> Result<OutboundOpaqueMessage, Error> {
        let mut payload =
            PrefixedPayload::with_capacity(self.encrypted_payload_len(m.payload.len()));
        payload.extend_from_chunks(&m.payload);
        payload.extend_from_slice(&[0; AEAD_TAG_LEN]);
        let nonce = Nonce::new(&self.iv, seq).0;
        let aad = make_tls12_aad(seq, m.typ, m.version, m.payload.len());
        aead_seal(
            Aead::ChaCha20Poly1305,
            self.key.as_ref(),
            &nonce,
            &aad,
            payload.as_mut(),
        )
        .map_err(|_| Error::EncryptError)?;
        Ok(OutboundOpaqueMessage::new(m.typ, m.version, payload))
    }

    fn encrypted_payload_len(&self, payload_len: usize) -> usize {
        payload_len + AEAD_TAG_LEN
    }
}

impl MessageDecrypter for Tls12ChaCha {
    fn decrypt<'a>(
        &mut self,
        mut m: InboundOpaqueMessage<'a>,
        seq: u64,
    ) -> Result<InboundPlainMessage<'a>, Error> {
        let sealed_len = m.payload.len();
        let plain_len = sealed_len
            .checked_sub(AEAD_TAG_LEN)
            .ok_or(Error::DecryptError)?;
        let nonce = Nonce::new(&self.iv, seq).0;
        let aad = make_tls12_aad(seq, m.typ, m.version, plain_len);
        let payload = &mut m.payload;
        aead_open(
            Aead::ChaCha20Poly1305,
            self.key.as_ref(),
            &nonce,
            &aad,
            payload,
        )
        .map_err(|_| Error::DecryptError)?;
        if plain_len > MAX_FRAGMENT_LEN {
            return Err(Error::PeerSentOversizedRecord);
        }
        payload.truncate(plain_len);
        Ok(m.into_plain_message())
    }
}

/// TLS 1.2 AES-GCM records (RFC 5288): the record starts with the 8-byte explicit nonce.
struct Tls12GcmEncrypter {
    alg: Aead,
    key: AeadKey,
    iv: Iv,
}

impl MessageEncrypter for Tls12GcmEncrypter {
    fn encrypt(
        &mut self,
        m: OutboundPlainMessage<'_>,
        seq: u64,
    ) -> Result<OutboundOpaqueMessage, Error> {
        let mut payload =
            PrefixedPayload::with_capacity(self.encrypted_payload_len(m.payload.len()));
        let nonce = Nonce::new(&self.iv, seq).0;
        payload.extend_from_slice(&nonce[4..]);
        payload.extend_from_chunks(&m.payload);
        payload.extend_from_slice(&[0; AEAD_TAG_LEN]);
        let aad = make_tls12_aad(seq, m.typ, m.version, m.payload.len());
        let sealed = &mut payload.as_mut()[GCM_EXPLICIT_NONCE_LEN..];
        aead_seal(self.alg, self.key.as_ref(), &nonce, &aad, sealed)
            .map_err(|_| Error::EncryptError)?;
        Ok(OutboundOpaqueMessage::new(m.typ, m.version, payload))
    }

    fn encrypted_payload_len(&self, payload_len: usize) -> usize {
        payload_len + GCM_EXPLICIT_NONCE_LEN + AEAD_TAG_LEN
    }
}

struct Tls12GcmDecrypter {
    alg: Aead,
    key: AeadKey,
    salt: [u8; 4],
}

impl MessageDecrypter for Tls12GcmDecrypter {
    fn decrypt<'a>(
        &mut self,
        mut m: InboundOpaqueMessage<'a>,
        seq: u64,
    ) -> Result<InboundPlainMessage<'a>, Error> {
        let plain_len = m
            .payload
            .len()
            .checked_sub(GCM_EXPLICIT_NONCE_LEN + AEAD_TAG_LEN)
            .ok_or(Error::DecryptError)?;
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..4].copy_from_slice(&self.salt);
        nonce[4..].copy_from_slice(&m.payload[..GCM_EXPLICIT_NONCE_LEN]);
        let aad = make_tls12_aad(seq, m.typ, m.version, plain_len);
        let sealed = &mut m.payload[GCM_EXPLICIT_NONCE_LEN..];
        aead_open(self.alg, self.key.as_ref(), &nonce, &aad, sealed)
            .map_err(|_| Error::DecryptError)?;
        if plain_len > MAX_FRAGMENT_LEN {
            return Err(Error::PeerSentOversizedRecord);
        }
        // The plaintext stays where it was decrypted, after the explicit nonce: no move.
        let start = GCM_EXPLICIT_NONCE_LEN;
        Ok(m.into_plain_message_range(start..start + plain_len))
    }
}
