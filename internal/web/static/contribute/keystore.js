// idlegrid browser provider: the provider key. It is an Ed25519 key made by
// WebCrypto and kept in this browser's IndexedDB (as a CryptoKey object,
// not as text). It is generated extractable so that its owner can download
// it as a key file in the format `idlegrid` uses (keys.Save: type,
// public_key, seed) — to register and stake it with `idlegrid ledger
// register --key-file FILE`, to move it to another browser, or to run the native
// agent with it — and a key file can be imported the same way.

import { address, fromHex, toHex } from "./codec.js";

const DB = "idlegrid-provider";
const STORE = "keys";
const SLOT = "provider";

// PKCS#8 wrapping of a 32-byte Ed25519 seed (RFC 8410): this prefix, then
// the seed.
const PKCS8_PREFIX = fromHex("302e020100300506032b657004220420");

function openDB() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function withStore(mode, fn) {
  const db = await openDB();
  try {
    return await new Promise((resolve, reject) => {
      const tx = db.transaction(STORE, mode);
      const req = fn(tx.objectStore(STORE));
      tx.oncomplete = () => resolve(req.result);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  } finally {
    db.close();
  }
}

// Identity is a loaded key: the CryptoKey pair, the raw public key and the
// account address.
async function identity(pair) {
  const publicKey = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
  return { pair, publicKey, publicHex: toHex(publicKey), address: await address(publicKey) };
}

// generate makes a new extractable Ed25519 key pair.
export async function generate() {
  return identity(await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"]));
}

// load returns the stored key, or null.
export async function load() {
  const pair = await withStore("readonly", (s) => s.get(SLOT));
  return pair ? identity(pair) : null;
}

export async function save(id) {
  await withStore("readwrite", (s) => s.put(id.pair, SLOT));
}

// loadOrCreate returns the stored key, generating and storing one the first
// time.
export async function loadOrCreate() {
  const existing = await load();
  if (existing) return { id: existing, created: false };
  const id = await generate();
  await save(id);
  return { id, created: true };
}

// exportKeyFile returns the key file text, as keys.Save writes it.
export async function exportKeyFile(id) {
  const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", id.pair.privateKey));
  if (pkcs8.length !== PKCS8_PREFIX.length + 32 || toHex(pkcs8.slice(0, PKCS8_PREFIX.length)) !== toHex(PKCS8_PREFIX)) {
    throw new Error("unexpected PKCS#8 encoding of the key");
  }
  const seed = pkcs8.slice(PKCS8_PREFIX.length);
  return JSON.stringify({ type: "ed25519", public_key: id.publicHex, seed: toHex(seed) }, null, 2) + "\n";
}

// importKeyFile reads a key file (keys.Save's format) and checks that its
// public key matches its seed, as keys.Load does.
export async function importKeyFile(text) {
  let kf;
  try {
    kf = JSON.parse(text);
  } catch {
    throw new Error("not a key file: it is not JSON");
  }
  if (!kf || kf.type !== "ed25519") throw new Error(`not an ed25519 key file (type ${JSON.stringify(kf && kf.type)})`);
  const seed = fromHex(String(kf.seed), 32);
  const der = new Uint8Array(PKCS8_PREFIX.length + 32);
  der.set(PKCS8_PREFIX);
  der.set(seed, PKCS8_PREFIX.length);
  const privateKey = await crypto.subtle.importKey("pkcs8", der, { name: "Ed25519" }, true, ["sign"]);
  // WebCrypto derives the public key only through JWK export.
  const jwk = await crypto.subtle.exportKey("jwk", privateKey);
  const publicKey = await crypto.subtle.importKey("jwk", { kty: "OKP", crv: "Ed25519", x: jwk.x }, { name: "Ed25519" }, true, ["verify"]);
  const id = await identity({ privateKey, publicKey });
  if (id.publicHex !== String(kf.public_key).toLowerCase()) throw new Error("the key file's public key does not match its seed");
  return id;
}

// sign signs bytes with the provider key.
export async function sign(id, bytes) {
  return new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, id.pair.privateKey, bytes));
}
