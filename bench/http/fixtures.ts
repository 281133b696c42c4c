/**
 * What the runner makes before it starts any server: the directory the `static` workload serves,
 * and the JWTs of the `session+jwt` workload (one valid, and one for each way a token must be
 * refused). Tokens are signed here with node:crypto, so no server's own JWT library signs the token
 * it then verifies.
 */
import { createHmac, randomBytes } from "node:crypto"
import { mkdirSync, mkdtempSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { JWT_SECRET, STATIC_FILE, STATIC_SIZE } from "./shared.ts"

export interface StaticFixture {
  /** The directory served under `/assets/` (BENCH_STATIC_ROOT). */
  readonly root: string
  /** The bytes of `root/file.bin`. */
  readonly bytes: Buffer
  /** Its mtime as an HTTP date (what Last-Modified must say). */
  readonly lastModified: string
  /** The contents of a file next to `root`, which no request may read. */
  readonly secret: string
  readonly remove: () => void
}

/**
 * A temporary directory `bench-static-…/public` holding a 64 KiB file of random text, with
 * `bench-static-…/secret.txt` beside it to catch path traversal.
 */
export const makeStaticFixture = (): StaticFixture => {
  const base = mkdtempSync(join(tmpdir(), "bench-static-"))
  const root = join(base, "public")
  mkdirSync(root)
  // Random, but printable (base64 text): autocannon decodes every response body into a string, and
  // random binary bytes (invalid UTF-8 for the most part) made that decoding, in the load generator,
  // the bottleneck of the workload. The servers do the same work whatever the bytes are.
  const bytes = Buffer.from(randomBytes((STATIC_SIZE / 4) * 3).toString("base64"))
  const file = join(root, STATIC_FILE)
  writeFileSync(file, bytes)
  // A whole second a minute ago, so HTTP dates (second precision) say exactly the file's mtime.
  const mtime = new Date(Math.floor(Date.now() / 1000) * 1000 - 60_000)
  const secret = `not-for-clients-${randomBytes(8).toString("hex")}`
  writeFileSync(join(base, "secret.txt"), secret)
  utimesSync(file, mtime, mtime)
  return {
    root,
    bytes,
    lastModified: statSync(file).mtime.toUTCString(),
    secret,
    remove: () => rmSync(base, { recursive: true, force: true })
  }
}

const b64url = (value: string | Buffer): string => Buffer.from(value).toString("base64url")

/** A compact JWS of `claims`, signed with HMAC (`alg` HS256/HS384/HS512) or unsigned (`none`). */
export const signJwt = (
  claims: Record<string, unknown>,
  options: { readonly alg?: "HS256" | "HS384" | "HS512" | "none"; readonly secret?: string } = {}
): string => {
  const alg = options.alg ?? "HS256"
  const input = `${b64url(JSON.stringify({ alg, typ: "JWT" }))}.${b64url(JSON.stringify(claims))}`
  if (alg === "none") return `${input}.`
  const hash = alg === "HS256" ? "sha256" : alg === "HS384" ? "sha384" : "sha512"
  return `${input}.${createHmac(hash, options.secret ?? JWT_SECRET)
    .update(input)
    .digest("base64url")}`
}

/** The subject of the valid token: what `GET /api/me` answers as `user`. */
export const JWT_SUBJECT = "user-7f3a9c"

export interface Tokens {
  /** HS256, `exp` a day ahead: the load's token. */
  readonly valid: string
  readonly expired: string
  /** Signed with the right secret but with HS512, which is not on the allowlist. */
  readonly otherAlgorithm: string
  readonly unsigned: string
  readonly badSignature: string
  readonly noExp: string
}

export const makeTokens = (): Tokens => {
  const now = Math.floor(Date.now() / 1000)
  const claims = { sub: JWT_SUBJECT, iat: now, exp: now + 24 * 60 * 60 }
  const valid = signJwt(claims)
  return {
    valid,
    // Well past every server's clock tolerance (5 s).
    expired: signJwt({ ...claims, iat: now - 7200, exp: now - 3600 }),
    otherAlgorithm: signJwt(claims, { alg: "HS512" }),
    unsigned: signJwt(claims, { alg: "none" }),
    badSignature: signJwt(claims, { secret: "another-secret-of-32-bytes-or-more" }),
    noExp: signJwt({ sub: JWT_SUBJECT, iat: now })
  }
}
