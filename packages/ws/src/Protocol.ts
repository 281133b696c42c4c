/**
 * The wire protocol a channel speaks: JSON text frames with a one-letter kind, the close codes and
 * their typed reasons, and the schema hash that travels as the WebSocket subprotocol. Server and
 * client both read it; it has no Node-only imports, so it runs in browsers too.
 *
 * @since 0.1.0
 */

/**
 * The version of the frame format; part of every channel's hash, so a change of format refuses old
 * clients the same way a change of schema does.
 *
 * @category models
 */
export const version = 1

/**
 * What every subprotocol name starts with: `strata.<hash>`.
 *
 * @category models
 */
export const subprotocolPrefix = "strata."

// ---------------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------------

/**
 * A position in a topic's history: the history's epoch (which changes when the history is lost or
 * restarted) and the offset of an event in it.
 *
 * @category models
 */
export interface Position {
  readonly e: string
  readonly o: number
}

/**
 * A request id: a number or a short string chosen by the client.
 *
 * @category models
 */
export type RequestId = string | number

/**
 * Frames a client sends. `d` holds a value encoded by the channel's schemas.
 *
 * - `m`: a message of the client schema
 * - `q`: a request `n` with id `i`
 * - `j`: join topic `n` with key `k`, resuming after `f` if given
 * - `l`: leave topic `n` with key `k`
 * - `p`: who is in topic `n` with key `k` (answered with `P`, by id)
 * - `h` / `H`: heartbeat and its answer
 *
 * @category models
 */
export type ClientFrame =
  | { readonly t: "m"; readonly d: unknown }
  | { readonly t: "q"; readonly i: RequestId; readonly n: string; readonly d: unknown }
  | { readonly t: "j"; readonly n: string; readonly k: unknown; readonly f?: Position | undefined }
  | { readonly t: "l"; readonly n: string; readonly k: unknown }
  | { readonly t: "p"; readonly i: RequestId; readonly n: string; readonly k: unknown }
  | { readonly t: "h" }
  | { readonly t: "H" }

/**
 * Why a request got no typed answer.
 *
 * @category models
 */
export type RequestFailureTag = "Timeout" | "InvalidRequest" | "UnknownRequest" | "Internal" | "Busy"

/**
 * How a join ended: `fresh` (no position given), `recovered` (every event after the position was
 * replayed), `gap` (some were lost: the epoch changed or they left the bounded history).
 *
 * @category models
 */
export type JoinResult = "fresh" | "recovered" | "gap"

/**
 * Why a join was refused.
 *
 * @category models
 */
export type JoinRefusalTag = "Denied" | "UnknownTopic" | "InvalidKey" | "Unavailable"

/**
 * Frames a server sends.
 *
 * - `m`: a message of the server schema
 * - `r`: the answer to request `i`: `ok`, a typed `err`, or a `fail`ure of the machinery
 * - `e`: an event of topic `n`/`k` at offset `o` of epoch `ep`
 * - `j`: the answer to a join: `ok` with the result and the topic's position, or `no`
 * - `l`: the connection left topic `n`/`k` (asked for, or removed by the server)
 * - `P`: the members of a topic, answering `p`
 * - `x`: a frame of the client was refused (it stays connected)
 * - `h` / `H`: heartbeat and its answer
 *
 * @category models
 */
export type ServerFrame =
  | { readonly t: "m"; readonly d: unknown }
  | { readonly t: "r"; readonly i: RequestId; readonly ok: unknown }
  | { readonly t: "r"; readonly i: RequestId; readonly err: unknown }
  | {
      readonly t: "r"
      readonly i: RequestId
      readonly fail: { readonly _tag: RequestFailureTag; readonly message: string }
    }
  | {
      readonly t: "e"
      readonly n: string
      readonly k: unknown
      readonly o: number
      readonly ep: string
      readonly d: unknown
    }
  | {
      readonly t: "j"
      readonly n: string
      readonly k: unknown
      readonly ok: {
        readonly r: JoinResult
        readonly e: string
        readonly o: number
        readonly missed?: number
      }
    }
  | {
      readonly t: "j"
      readonly n: string
      readonly k: unknown
      readonly no: { readonly _tag: JoinRefusalTag; readonly message: string }
    }
  | { readonly t: "l"; readonly n: string; readonly k: unknown }
  | {
      readonly t: "P"
      readonly i: RequestId
      readonly m: ReadonlyArray<{ readonly id: string; readonly meta: unknown }>
    }
  | {
      readonly t: "x"
      readonly reason: { readonly _tag: "InvalidFrame" | "InvalidMessage"; readonly message: string }
    }
  | { readonly t: "h" }
  | { readonly t: "H" }

const isRecord = (u: unknown): u is Record<string, unknown> =>
  typeof u === "object" && u !== null && !Array.isArray(u)

const isRequestId = (u: unknown): u is RequestId =>
  (typeof u === "number" && Number.isSafeInteger(u)) ||
  (typeof u === "string" && u.length > 0 && u.length <= 64)

const isPosition = (u: unknown): u is Position =>
  isRecord(u) &&
  typeof u["e"] === "string" &&
  u["e"].length <= 64 &&
  typeof u["o"] === "number" &&
  Number.isSafeInteger(u["o"]) &&
  u["o"] >= 0

/**
 * Reads a client frame from text: the envelope only (the payload is decoded by the channel's
 * schemas). A string is an explanation of what is wrong.
 *
 * @category parsing
 */
export const parseClientFrame = (text: string): ClientFrame | string => {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return "the frame is not JSON"
  }
  if (!isRecord(value)) return "the frame is not a JSON object"
  switch (value["t"]) {
    case "m":
      return "d" in value ? (value as ClientFrame) : "a message frame needs d"
    case "q":
      if (!isRequestId(value["i"]))
        return "a request needs an id i: an integer or a string of 1 to 64 characters"
      if (typeof value["n"] !== "string") return "a request needs a name n"
      return value as ClientFrame
    case "j":
    case "l":
      if (typeof value["n"] !== "string") return "a topic frame needs a topic name n"
      if (!("k" in value)) return "a topic frame needs a key k"
      if (value["t"] === "j" && value["f"] !== undefined && !isPosition(value["f"])) {
        return "a join's position f must be { e: string, o: non-negative integer }"
      }
      return value as ClientFrame
    case "p":
      if (!isRequestId(value["i"])) return "a presence query needs an id i"
      if (typeof value["n"] !== "string" || !("k" in value)) return "a presence query needs n and k"
      return value as ClientFrame
    case "h":
    case "H":
      return value as ClientFrame
    default:
      return "unknown frame kind t"
  }
}

/**
 * Reads a server frame from text; undefined when it is not one.
 *
 * @category parsing
 */
export const parseServerFrame = (text: string): ServerFrame | undefined => {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return undefined
  }
  if (!isRecord(value) || typeof value["t"] !== "string") return undefined
  return value as ServerFrame
}

// ---------------------------------------------------------------------------------------------
// Close codes
// ---------------------------------------------------------------------------------------------

/**
 * The close codes a channel uses: the standard ones it sends, and its own in 4000–4099. Codes
 * 4100–4999 are left to applications (`conn.close({ code: 4100, reason: "…" })`).
 *
 * @category close codes
 */
export const CloseCode = {
  Normal: 1000,
  GoingAway: 1001,
  ProtocolError: 1002,
  UnsupportedData: 1003,
  Abnormal: 1006,
  InvalidPayload: 1007,
  PolicyViolation: 1008,
  MessageTooBig: 1009,
  InternalError: 1011,
  /** A frame that is not JSON or not a known envelope (when the route closes on invalid frames). */
  InvalidFrame: 4000,
  /** A message the channel's schema refused (when the route closes on invalid frames). */
  InvalidMessage: 4001,
  /** More invalid frames than the route tolerates. */
  TooManyInvalidFrames: 4002,
  /** No answer to a heartbeat in time. */
  HeartbeatTimeout: 4003,
  /** Nothing received for longer than the idle timeout. */
  IdleTimeout: 4004,
  /** The outbound queue filled up under the `close` policy. */
  SlowConsumer: 4005,
  /** The server closed the connection (a handler called `close`). */
  ServerClosed: 4006
} as const

/**
 * The name of a close code.
 *
 * @category close codes
 */
export type CloseCodeName = keyof typeof CloseCode

const namesByCode = new Map<number, CloseCodeName>(
  Object.entries(CloseCode).map(([name, code]) => [code, name as CloseCodeName])
)

/**
 * Why a connection closed, as the client sees it: the name of a known code, or `Application` for
 * 4100–4999 and `Other` for anything else. `message` is the close frame's reason text.
 *
 * @category close codes
 */
export type CloseReason =
  | { readonly _tag: CloseCodeName; readonly code: number; readonly message: string }
  | { readonly _tag: "Application"; readonly code: number; readonly message: string }
  | { readonly _tag: "Other"; readonly code: number; readonly message: string }

/**
 * The typed reason of a close code.
 *
 * @category close codes
 */
export const closeReason = (code: number, message = ""): CloseReason => {
  const name = namesByCode.get(code)
  if (name !== undefined) return { _tag: name, code, message }
  if (code >= 4100 && code <= 4999) return { _tag: "Application", code, message }
  return { _tag: "Other", code, message }
}

/**
 * Close reason text must fit in a control frame (123 bytes of UTF-8).
 *
 * @category close codes
 */
export const truncateReason = (text: string): string => {
  const bytes = new TextEncoder().encode(text)
  if (bytes.length <= 123) return text
  let end = 123
  // Do not cut a multi-byte character in half.
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--
  return new TextDecoder().decode(bytes.subarray(0, end))
}

// ---------------------------------------------------------------------------------------------
// Hash
// ---------------------------------------------------------------------------------------------

const ignoredKeys = new Set(["description", "title", "examples", "default", "$comment", "documentation"])

/**
 * JSON with sorted keys and without documentation fields, so the hash depends on what the schemas
 * accept, not on the order of their fields or on their prose.
 *
 * @category hash
 */
export const canonicalJson = (value: unknown): string => {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`
  if (isRecord(value)) {
    const keys = Object.keys(value)
      .filter((k) => !ignoredKeys.has(k) && value[k] !== undefined)
      .toSorted()
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k])}`).join(",")}}`
  }
  return JSON.stringify(value) ?? "null"
}

// Two independent 32-bit FNV-1a style lanes: 64 bits, enough to tell versions of a protocol apart
// (this is an identity, not a security check), computed synchronously in any JS runtime.
const hash64 = (text: string): string => {
  let a = 0x811c9dc5
  let b = 0x01000193 ^ 0x5bd1e995
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    a = Math.imul(a ^ c, 0x01000193)
    b = Math.imul(b ^ c, 0x5bd1e995)
    b ^= b >>> 15
  }
  a ^= a >>> 13
  a = Math.imul(a, 0xc2b2ae35)
  a ^= a >>> 16
  return (a >>> 0).toString(16).padStart(8, "0") + (b >>> 0).toString(16).padStart(8, "0")
}

/**
 * The hash of a value's canonical JSON, as 16 hex digits.
 *
 * @category hash
 */
export const hash = (value: unknown): string => hash64(canonicalJson(value))

/**
 * The subprotocols named in a `Sec-WebSocket-Protocol` header.
 *
 * @category hash
 */
export const parseSubprotocols = (header: string | undefined): ReadonlyArray<string> =>
  header === undefined
    ? []
    : header
        .split(",")
        .map((s) => s.trim())
        .filter((s) => s.length > 0)

// What `String.prototype.trim` removes.
const space = /\s/
const isSpace = (header: string, at: number): boolean => space.test(header[at]!)

/**
 * Does a `Sec-WebSocket-Protocol` header name this subprotocol? The same answer as
 * `parseSubprotocols(header).includes(protocol)`, without building the list (a server asks it once
 * per upgrade).
 *
 * @category hash
 */
export const offersSubprotocol = (header: string | undefined, protocol: string): boolean => {
  if (header === undefined || protocol.length === 0) return false
  for (let at = header.indexOf(protocol); at !== -1; at = header.indexOf(protocol, at + 1)) {
    let before = at - 1
    while (before >= 0 && isSpace(header, before)) before--
    if (before >= 0 && header.charCodeAt(before) !== 0x2c) continue
    let after = at + protocol.length
    while (after < header.length && isSpace(header, after)) after++
    if (after === header.length || header.charCodeAt(after) === 0x2c) return true
  }
  return false
}
