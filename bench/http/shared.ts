/**
 * What every benchmarked server shares: the fixed credentials, the request-id rule, the log sink,
 * the order payload and its hand-written validator. Keeping one copy here is what makes the five
 * servers behave identically; each server file only wires these into its own framework's idiom.
 */
import { Writable } from "node:stream"

export const HOST = "127.0.0.1"

/** The only bearer token the `stack` workload accepts. */
export const TOKEN = "bench-token-7f3a9c"

/** The `WWW-Authenticate` challenge of a 401. */
export const CHALLENGE = 'Bearer realm="bench"'

/** The header that carries the request id, read and written. */
export const REQUEST_ID_HEADER = "x-request-id"

/**
 * Incoming ids are trusted only when they match Strata's own rule (RequestId.ts), so that every
 * server takes the same branch for the same request.
 */
export const REQUEST_ID_PATTERN = /^[A-Za-z0-9._:@/+=-]{1,128}$/

export const requestIdOf = (incoming: string | undefined): string =>
  incoming !== undefined && REQUEST_ID_PATTERN.test(incoming) ? incoming : crypto.randomUUID()

/** The token of an `Authorization: Bearer <token>` header, if it has that form. */
export const bearerToken = (header: string | undefined): string | undefined =>
  header !== undefined && header.startsWith("Bearer ") ? header.slice(7) : undefined

/** The 401 body; it is the body Strata's `HttpError.Unauthorized` answers with. */
export const unauthorizedBody = { error: "Unauthorized", message: "Unauthorized" } as const

/** The body of `GET /api/users/:id`. */
export const userBody = (id: string) => ({ id, name: `user-${id}` })

/** What a server's authenticated caller is known as, provided by the bearer middleware. */
export interface Principal {
  readonly subject: string
}

export const benchPrincipal: Principal = { subject: "bench-client" }

/**
 * Parses a `Cookie` header into a record of every cookie (not only `sid`): that is what Effect's
 * `request.cookies` and Hono's `getCookie(c)` do, so the servers without a cookie parser of their
 * own (node, Fastify without @fastify/cookie) do the same amount of work.
 */
export const parseCookies = (header: string | undefined): Record<string, string> => {
  const out: Record<string, string> = {}
  if (header === undefined) return out
  for (const part of header.split(";")) {
    const eq = part.indexOf("=")
    if (eq === -1) continue
    const name = part.slice(0, eq).trim()
    if (name === "" || Object.hasOwn(out, name)) continue
    let value = part.slice(eq + 1).trim()
    if (value.length > 1 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1)
    try {
      out[name] = value.includes("%") ? decodeURIComponent(value) : value
    } catch {
      out[name] = value
    }
  }
  return out
}

/**
 * Where request logs go. By default a stream that drops every chunk, so the benchmark measures
 * building and writing the line, not the terminal or a disk. `BENCH_LOG_SINK=stderr` sends the lines
 * to stderr instead: the runner does that once per server to check each one logs a line per request.
 */
export const logSink: Writable =
  process.env["BENCH_LOG_SINK"] === "stderr"
    ? process.stderr
    : new Writable({
        write(_chunk, _encoding, callback) {
          callback()
        }
      })

/** The fields of one request log line. */
export interface RequestLog {
  readonly method: string
  readonly path: string
  readonly status: number
  readonly durationMs: number
  readonly requestId: string
}

/**
 * Writes one structured JSON line for a request, shaped like the line Effect's `Logger.formatJson`
 * writes for Strata's request logger (message, level, timestamp, annotations), so the servers that
 * do not run on Effect serialize a comparable line to the same kind of sink.
 */
export const logRequest = (log: RequestLog): void => {
  logSink.write(
    JSON.stringify({
      message: "request",
      level: "INFO",
      timestamp: new Date().toISOString(),
      annotations: {
        "http.method": log.method,
        "http.path": log.path,
        "http.status": log.status,
        durationMs: Math.round(log.durationMs * 1000) / 1000,
        requestId: log.requestId
      }
    }) + "\n"
  )
}

/** The path of a request target, without its query string (which may carry secrets). */
export const pathOf = (url: string): string => {
  const end = url.search(/[?#]/)
  return end === -1 ? url : url.slice(0, end)
}

/** The `json` workload's payload. */
export interface Order {
  readonly id: string
  readonly customer: { readonly name: string; readonly email: string; readonly vip: boolean }
  readonly items: ReadonlyArray<{ readonly sku: string; readonly quantity: number; readonly price: number }>
  readonly tags: ReadonlyArray<string>
  readonly note: string
  readonly createdAt: string
}

/** A body of about 1 KB once serialized, sent by the load for `POST /echo`. */
export const sampleOrder: Order = {
  id: "ord_01HZX5V8Q6T3K9M2B7C4D1E0FA",
  customer: { name: "Ada Lovelace", email: "ada@example.com", vip: true },
  items: [
    { sku: "SKU-1001-RED-M", quantity: 2, price: 19.99 },
    { sku: "SKU-1002-BLU-L", quantity: 1, price: 34.5 },
    { sku: "SKU-1003-GRN-S", quantity: 3, price: 7.25 },
    { sku: "SKU-1004-BLK-XL", quantity: 1, price: 120 },
    { sku: "SKU-1005-WHT-M", quantity: 5, price: 2.99 },
    { sku: "SKU-1006-YLW-L", quantity: 1, price: 15 },
    { sku: "SKU-1007-PUR-S", quantity: 4, price: 11.75 },
    { sku: "SKU-1008-ORG-M", quantity: 2, price: 8.4 }
  ],
  tags: ["express", "gift", "fragile", "priority", "newsletter", "returning-customer"],
  note:
    "Please leave the parcel with the concierge if nobody answers. The gift wrap should be plain, " +
    "without a price tag, and the card should read: happy birthday, with love from all of us. " +
    "Deliver between nine and five on a weekday; call ahead if there is any delay at all.",
  createdAt: "2025-01-15T09:30:00.000Z"
}

const isString = (u: unknown): u is string => typeof u === "string"
const isRecord = (u: unknown): u is Record<string, unknown> =>
  typeof u === "object" && u !== null && !Array.isArray(u)

/**
 * The hand-written validator for the servers without a schema library (node, Hono). It checks the
 * same rules as the Effect Schema and the JSON Schema (quantity a positive integer, price a finite
 * number >= 0) and, like them, keeps only the declared keys: it returns a fresh object, or the
 * message of the first problem.
 */
export const validateOrder = (u: unknown): Order | string => {
  if (!isRecord(u)) return "body must be an object"
  const { id, customer, items, tags, note, createdAt } = u
  if (!isString(id)) return "id must be a string"
  if (!isRecord(customer)) return "customer must be an object"
  if (!isString(customer["name"]) || !isString(customer["email"]) || typeof customer["vip"] !== "boolean") {
    return "customer must have name, email and vip"
  }
  if (!Array.isArray(items)) return "items must be an array"
  const outItems: Array<Order["items"][number]> = []
  for (const item of items as ReadonlyArray<unknown>) {
    if (!isRecord(item)) return "each item must be an object"
    const { sku, quantity, price } = item
    if (!isString(sku)) return "item.sku must be a string"
    if (typeof quantity !== "number" || !Number.isInteger(quantity) || quantity < 1) {
      return "item.quantity must be an integer >= 1"
    }
    if (typeof price !== "number" || !Number.isFinite(price) || price < 0) {
      return "item.price must be a finite number >= 0"
    }
    outItems.push({ sku, quantity, price })
  }
  if (!Array.isArray(tags) || !tags.every(isString)) return "tags must be an array of strings"
  if (!isString(note)) return "note must be a string"
  if (!isString(createdAt)) return "createdAt must be a string"
  return {
    id,
    customer: { name: customer["name"], email: customer["email"], vip: customer["vip"] },
    items: outItems,
    tags: [...tags],
    note,
    createdAt
  }
}

/** The 400 body every server answers a bad `POST /echo` with (Strata's `HttpError.BadRequest` shape). */
export const badRequestBody = (message: string) => ({ error: "BadRequest", message })

/**
 * Tells the runner which port the server listens on: one line on stdout, read by `run.ts`. Servers
 * listen on port 0, so the OS picks a free port and no two runs can race for one.
 */
export const announce = (port: number): void => {
  process.stdout.write(`listening ${port}\n`)
}

// ---------------------------------------------------------------------------------------------------
// `session+jwt`
// ---------------------------------------------------------------------------------------------------

/** The HS256 secret the JWTs are signed with (32 bytes: the least RFC 7518 allows for HS256). */
export const JWT_SECRET = "bench-jwt-secret-0123456789abcdef"

/** The key session cookies are signed with (32 bytes or more, as both Strata and Fastify require). */
export const SESSION_SECRET = "bench-session-secret-0123456789ab"

/** The session cookie's name in every server (Fastify's default is `sessionId`, Strata's `sid`). */
export const SESSION_COOKIE = "sid"

/** How long a session cookie lives: Strata's default absolute timeout, given to Fastify too. */
export const SESSION_MAX_AGE_S = 7 * 24 * 60 * 60

/**
 * The `WWW-Authenticate` challenge of a rejected JWT (RFC 6750 §3.1); a missing one gets `CHALLENGE`
 * alone, which is what `Auth.jwt({ realm: "bench" })` answers.
 */
export const INVALID_TOKEN_CHALLENGE = `${CHALLENGE}, error="invalid_token"`

/** Leeway for `exp` and `nbf`: Strata's default, given to Fastify's verifier too. */
export const CLOCK_TOLERANCE_S = 5

/** The body of `POST /login` and `GET /api/me`: who the JWT names, and the session's counter. */
export const meBody = (user: string, counter: number) => ({ user, counter })

/** The body of `POST /login`: the counter after the login incremented it. */
export const loginBody = (counter: number) => ({ counter })

// ---------------------------------------------------------------------------------------------------
// `json-schema`
// ---------------------------------------------------------------------------------------------------

/**
 * The limits the `json-schema` payload is validated against; one table, so the Effect Schema, the
 * JSON Schema and the hand-written check below cannot drift apart. Lengths are of ASCII strings in
 * the checks (JSON Schema counts code points, JavaScript UTF-16 units; ASCII is the same in both).
 */
export const limits = {
  username: [3, 32],
  email: [6, 254],
  age: [13, 130],
  displayName: [1, 64],
  bio: [0, 280],
  locale: [2, 16],
  street: [1, 120],
  city: [1, 80],
  postcode: [3, 12],
  country: [2, 2],
  devices: [1, 10],
  deviceId: [8, 64],
  lastSeen: [0, 4_102_444_800],
  score: [0, 100]
} as const satisfies Record<string, readonly [number, number]>

export const platforms = ["ios", "android", "web"] as const

/** The `json-schema` workload's payload. */
export interface NewUser {
  readonly username: string
  readonly email: string
  readonly age: number
  readonly profile: {
    readonly displayName: string
    readonly bio: string
    readonly locale: string
    readonly address: {
      readonly street: string
      readonly city: string
      readonly postcode: string
      readonly country: string
    }
  }
  readonly devices: ReadonlyArray<{
    readonly id: string
    readonly platform: (typeof platforms)[number]
    readonly lastSeen: number
    readonly trusted: boolean
  }>
  readonly score: number
  readonly newsletter: boolean
}

/** About 1 KB once serialized, sent by the load for `POST /users`. */
export const sampleUser: NewUser = {
  username: "ada_lovelace",
  email: "ada.lovelace@example.com",
  age: 36,
  profile: {
    displayName: "Ada Lovelace",
    bio:
      "Mathematician and writer, chiefly known for her work on Charles Babbage's proposed mechanical " +
      "general-purpose computer, the Analytical Engine. She was the first to recognise that the machine " +
      "had applications beyond pure calculation, and published the first algorithm for it.",
    locale: "en-GB",
    address: { street: "12 St James's Square", city: "London", postcode: "SW1Y 4JH", country: "GB" }
  },
  devices: [
    { id: "dev-7f3a9c2b4e", platform: "ios", lastSeen: 1_736_930_000, trusted: true },
    { id: "dev-1b8d6f0a3c", platform: "android", lastSeen: 1_736_843_600, trusted: false },
    { id: "dev-9e2c4a7b1d", platform: "web", lastSeen: 1_736_757_200, trusted: true },
    { id: "dev-5d0f8b3e6a", platform: "web", lastSeen: 1_736_670_800, trusted: false },
    { id: "dev-2a6e9c1f7b", platform: "ios", lastSeen: 1_736_584_400, trusted: true }
  ],
  score: 87.5,
  newsletter: false
}

const inLength = (u: unknown, [min, max]: readonly [number, number]): u is string =>
  isString(u) && u.length >= min && u.length <= max

const inRange = (u: unknown, [min, max]: readonly [number, number], integer: boolean): u is number =>
  typeof u === "number" && (integer ? Number.isInteger(u) : Number.isFinite(u)) && u >= min && u <= max

/**
 * The hand-written check of the `json-schema` payload for the servers without a schema library (node,
 * Hono): the rules of `limits`, and, like Schema decoding and Ajv's `removeAdditional`, a fresh
 * object with only the declared keys. Returns it, or the message of the first problem.
 */
export const validateNewUser = (u: unknown): NewUser | string => {
  if (!isRecord(u)) return "body must be an object"
  const { username, email, age, profile, devices, score, newsletter } = u
  if (!inLength(username, limits.username)) return "username: bad length"
  if (!inLength(email, limits.email)) return "email: bad length"
  if (!inRange(age, limits.age, true)) return "age: an integer in range"
  if (!isRecord(profile)) return "profile must be an object"
  const { displayName, bio, locale, address } = profile
  if (!inLength(displayName, limits.displayName)) return "profile.displayName: bad length"
  if (!inLength(bio, limits.bio)) return "profile.bio: bad length"
  if (!inLength(locale, limits.locale)) return "profile.locale: bad length"
  if (!isRecord(address)) return "profile.address must be an object"
  const { street, city, postcode, country } = address
  if (!inLength(street, limits.street)) return "profile.address.street: bad length"
  if (!inLength(city, limits.city)) return "profile.address.city: bad length"
  if (!inLength(postcode, limits.postcode)) return "profile.address.postcode: bad length"
  if (!inLength(country, limits.country)) return "profile.address.country: bad length"
  if (!Array.isArray(devices)) return "devices must be an array"
  if (devices.length < limits.devices[0] || devices.length > limits.devices[1]) return "devices: bad count"
  const outDevices: Array<NewUser["devices"][number]> = []
  for (const device of devices as ReadonlyArray<unknown>) {
    if (!isRecord(device)) return "each device must be an object"
    const { id, platform, lastSeen, trusted } = device
    if (!inLength(id, limits.deviceId)) return "device.id: bad length"
    if (!(platforms as ReadonlyArray<unknown>).includes(platform)) return "device.platform: unknown"
    if (!inRange(lastSeen, limits.lastSeen, true)) return "device.lastSeen: an integer in range"
    if (typeof trusted !== "boolean") return "device.trusted must be a boolean"
    outDevices.push({ id, platform: platform as NewUser["devices"][number]["platform"], lastSeen, trusted })
  }
  if (!inRange(score, limits.score, false)) return "score: a number in range"
  if (typeof newsletter !== "boolean") return "newsletter must be a boolean"
  return {
    username,
    email,
    age,
    profile: { displayName, bio, locale, address: { street, city, postcode, country } },
    devices: outDevices,
    score,
    newsletter
  }
}

/** The 415 body every server answers a `POST /users` that is not JSON with (Strata's shape). */
export const unsupportedMediaTypeBody = { error: "UnsupportedMediaType", message: "Unsupported Media Type" }

/** Whether a Content-Type header names JSON (`application/json`, any parameters). */
export const isJsonContentType = (header: string | undefined): boolean =>
  header !== undefined && header.split(";", 1)[0]!.trim().toLowerCase() === "application/json"

// ---------------------------------------------------------------------------------------------------
// `static`
// ---------------------------------------------------------------------------------------------------

/** The file the `static` load asks for, under `/assets/`, and its size. */
export const STATIC_FILE = "file.bin"
export const STATIC_SIZE = 64 * 1024

/** The `Cache-Control` every server sends with the file. */
export const STATIC_CACHE_CONTROL = "public, max-age=3600"

/**
 * The directory served under `/assets/`: made by the runner in a temporary directory (with the file
 * in it, and a file beside it that must never be served) and given to each server in
 * `BENCH_STATIC_ROOT`.
 */
export const staticRoot = (): string => {
  const root = process.env["BENCH_STATIC_ROOT"]
  if (root === undefined || root === "") throw new Error("BENCH_STATIC_ROOT is not set (the runner sets it)")
  return root
}
