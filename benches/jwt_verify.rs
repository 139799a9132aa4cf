//! What one subscriber-token check costs (signature, claims, the `topics` patterns):
//! HS256, RS256 (2048-bit key) and ES256, in one group so the ratios come from one
//! run. This is the CPU a login or a `refresh` costs, and why it runs on a helper
//! thread instead of the worker (see `io::offload`).

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use feedrelay::relay::access::jwt::{JwtAlgorithm, JwtConfig, JwtVerifier};
use feedrelay::relay::access::secret::Secret;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};

const SECRET: &str = "a-shared-secret-of-at-least-32-bytes!";

fn verifier(algorithm: JwtAlgorithm, key: String) -> JwtVerifier {
    JwtConfig {
        algorithm,
        key_file: Some("k".into()),
        jwks_file: None,
        issuer: None,
        audience: None,
        leeway_s: 0,
        key: Some(Secret::new(key)),
    }
    .verifier()
    .expect("a usable key")
}

fn jwt_verify(c: &mut Criterion) {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jwt");
    let read = |f: &str| std::fs::read_to_string(fixtures.join(f)).expect("fixture");
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 3_600;
    let claims = serde_json::json!({"exp": exp, "topics": ["BTC-*", "ETH-USD"]});
    let sign = |alg, key: &EncodingKey| encode(&Header::new(alg), &claims, key).expect("signed");
    let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("a key");
    let cases = [
        (
            "HS256",
            verifier(JwtAlgorithm::HS256, SECRET.into()),
            sign(
                Algorithm::HS256,
                &EncodingKey::from_secret(SECRET.as_bytes()),
            ),
        ),
        (
            "RS256",
            verifier(JwtAlgorithm::RS256, read("rs256-public.pem")),
            sign(
                Algorithm::RS256,
                &EncodingKey::from_rsa_pem(read("rs256-private.pem").as_bytes()).expect("key"),
            ),
        ),
        (
            "ES256",
            verifier(JwtAlgorithm::ES256, ec.public_key_pem()),
            sign(
                Algorithm::ES256,
                &EncodingKey::from_ec_pem(ec.serialize_pem().as_bytes()).expect("key"),
            ),
        ),
    ];
    let mut group = c.benchmark_group("jwt_verify");
    for (name, v, token) in &cases {
        assert!(v.verify(token).is_ok(), "{name}");
        group.bench_function(*name, |b| b.iter(|| v.verify(black_box(token))));
    }
    group.finish();
}

criterion_group!(benches, jwt_verify);
criterion_main!(benches);
