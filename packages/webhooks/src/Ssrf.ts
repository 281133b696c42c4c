/**
 * SSRF guard for outgoing webhook deliveries: refuses loopback, private, link-local, multicast,
 * reserved and documentation addresses, in every IPv4 and IPv6 spelling, on the address actually
 * dialled. Use `layerHttpClient` for the dispatcher's `HttpClient`; `classify` and `makeLookup` are the
 * pieces underneath.
 *
 * Why on the dialled address: a check of the URL's host before the request is undone by DNS
 * rebinding (the name resolves to a public address for the check and to 127.0.0.1 for the connect).
 * Here the resolver itself refuses blocked addresses, and IP literals (which Node never resolves) are
 * checked by the connector just before it opens the socket.
 *
 * @since 0.1.0
 */
import * as Layer from "effect/Layer"
import type * as HttpClient from "effect/http/HttpClient"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as Undici from "@effect/platform-node/Undici"
import * as dns from "node:dns"
import type * as net from "node:net"

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

/**
 * An address parsed: IPv4 as an unsigned 32-bit number, IPv6 as eight 16-bit groups.
 *
 * @category models
 */
export type Address =
  | { readonly family: 4; readonly value: number }
  | { readonly family: 6; readonly groups: ReadonlyArray<number> }

const dottedDecimal = /^(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})$/

const parseDotted = (text: string): number | undefined => {
  const match = dottedDecimal.exec(text)
  if (match === null) return undefined
  let value = 0
  for (let i = 1; i <= 4; i++) {
    const octet = Number(match[i])
    if (octet > 255) return undefined
    value = value * 256 + octet
  }
  return value
}

// The WHATWG URL host parser: what a browser, `fetch` and undici make of a host, including the old
// inet_aton spellings (`2130706433`, `0177.0.0.1`, `0x7f.1`, `127.1`) and every IPv6 form.
const whatwgHost = (host: string): string | undefined => {
  try {
    return new URL(`http://${host}/`).hostname
  } catch {
    return undefined
  }
}

const parseV6Canonical = (text: string): ReadonlyArray<number> | undefined => {
  const halves = text.split("::")
  if (halves.length > 2) return undefined
  const head = halves[0] === "" ? [] : halves[0]!.split(":")
  const tail = halves.length === 2 && halves[1] !== "" ? halves[1]!.split(":") : []
  const missing = 8 - head.length - tail.length
  if (halves.length === 1 ? missing !== 0 : missing < 1) return undefined
  const groups = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill("0"), ...tail].map((g) =>
    /^[0-9a-f]{1,4}$/.test(g) ? parseInt(g, 16) : Number.NaN
  )
  return groups.some(Number.isNaN) ? undefined : groups
}

/**
 * Parses an IP address the way a URL host is parsed: dotted IPv4, the inet_aton spellings (decimal,
 * octal, hex, short forms), IPv6 with or without brackets, with an embedded dotted IPv4 or a zone id.
 * Anything that is not an address (a DNS name, a host with a path) gives `undefined`.
 *
 * @category parsing
 */
export const parse = (input: string): Address | undefined => {
  const text = input.trim()
  const dotted = parseDotted(text)
  if (dotted !== undefined) return { family: 4, value: dotted }
  if (text.includes(":")) {
    const bare = text.startsWith("[") && text.endsWith("]") ? text.slice(1, -1) : text
    // A zone id (`fe80::1%eth0`) names the interface, not the address; the URL parser refuses it.
    const zone = bare.indexOf("%")
    const address = zone >= 0 ? bare.slice(0, zone) : bare
    if (!/^[0-9a-fA-F:.]+$/.test(address)) return undefined
    const host = whatwgHost(`[${address}]`)
    if (host === undefined) return undefined
    const groups = parseV6Canonical(host.slice(1, -1))
    return groups === undefined ? undefined : { family: 6, groups }
  }
  if (!/^[0-9a-zA-Z.]+$/.test(text)) return undefined
  const host = whatwgHost(text)
  const value = host === undefined ? undefined : parseDotted(host)
  return value === undefined ? undefined : { family: 4, value }
}

/**
 * The canonical text of an address: dotted IPv4, or compressed lowercase IPv6.
 *
 * @category parsing
 */
export const format = (address: Address): string => {
  if (address.family === 4) {
    const v = address.value
    return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`
  }
  return whatwgHost(`[${address.groups.map((g) => g.toString(16)).join(":")}]`)!.slice(1, -1)
}

// ---------------------------------------------------------------------------------------------
// Classification
// ---------------------------------------------------------------------------------------------

/**
 * Whether an address may be dialled, and why not.
 *
 * @category models
 */
export type Classification = { readonly blocked: false } | { readonly blocked: true; readonly reason: string }

const v4 = (dotted: string, prefix: number, reason: string) => ({
  base: parseDotted(dotted)!,
  mask: prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0,
  reason
})

// IANA's IPv4 special-purpose registry, minus nothing: none of these is a webhook target. The most
// specific entries come first so the reason is the precise one.
const v4Blocked = [
  v4("255.255.255.255", 32, "broadcast"),
  v4("0.0.0.0", 8, "unspecified (this network)"),
  v4("10.0.0.0", 8, "private"),
  v4("100.64.0.0", 10, "shared address space (CGNAT)"),
  v4("127.0.0.0", 8, "loopback"),
  v4("169.254.0.0", 16, "link-local"),
  v4("172.16.0.0", 12, "private"),
  v4("192.0.0.0", 24, "IETF protocol assignments"),
  v4("192.0.2.0", 24, "documentation (TEST-NET-1)"),
  v4("192.31.196.0", 24, "AS112"),
  v4("192.52.193.0", 24, "AMT"),
  v4("192.88.99.0", 24, "6to4 relay anycast"),
  v4("192.168.0.0", 16, "private"),
  v4("192.175.48.0", 24, "AS112"),
  v4("198.18.0.0", 15, "benchmarking"),
  v4("198.51.100.0", 24, "documentation (TEST-NET-2)"),
  v4("203.0.113.0", 24, "documentation (TEST-NET-3)"),
  v4("224.0.0.0", 4, "multicast"),
  v4("240.0.0.0", 4, "reserved")
]

const classifyV4 = (value: number): Classification => {
  for (const range of v4Blocked) {
    if ((value & range.mask) >>> 0 === range.base) return { blocked: true, reason: range.reason }
  }
  return { blocked: false }
}

const embedded = (high: number, low: number): number => ((high << 16) | low) >>> 0

const via = (what: string, inner: Classification): Classification =>
  inner.blocked ? { blocked: true, reason: `${what} ${inner.reason}` } : inner

const classifyV6 = (g: ReadonlyArray<number>): Classification => {
  const [g0, g1, g2, g3, g4, g5, g6, g7] = g as [
    number,
    number,
    number,
    number,
    number,
    number,
    number,
    number
  ]
  const zeroTo = (n: number) => g.slice(0, n).every((x) => x === 0)
  if (g.every((x) => x === 0)) return { blocked: true, reason: "unspecified" }
  if (zeroTo(7) && g7 === 1) return { blocked: true, reason: "loopback" }
  // Forms that carry an IPv4 address: they are as good (or bad) as the address they carry.
  if (zeroTo(5) && g5 === 0xffff) return via("IPv4-mapped", classifyV4(embedded(g6, g7)))
  if (zeroTo(4) && g4 === 0xffff && g5 === 0) return via("IPv4-translated", classifyV4(embedded(g6, g7)))
  if (zeroTo(6)) return via("IPv4-compatible", classifyV4(embedded(g6, g7)))
  if (g0 === 0x64 && g1 === 0xff9b && g2 === 0 && g3 === 0 && g4 === 0 && g5 === 0)
    return via("NAT64", classifyV4(embedded(g6, g7)))
  if (g0 === 0x64 && g1 === 0xff9b && g2 === 1) return { blocked: true, reason: "local-use NAT64" }
  if (g0 === 0x2002) return via("6to4", classifyV4(embedded(g1, g2)))
  if (g0 === 0x2001 && g1 === 0) {
    // Teredo: the server's IPv4 address in clear, the client's with every bit inverted.
    const server = via("Teredo server", classifyV4(embedded(g2, g3)))
    return server.blocked ? server : via("Teredo client", classifyV4(~embedded(g6, g7) >>> 0))
  }
  if ((g0 & 0xfe00) === 0xfc00) return { blocked: true, reason: "unique local (private)" }
  if ((g0 & 0xffc0) === 0xfe80) return { blocked: true, reason: "link-local" }
  if ((g0 & 0xffc0) === 0xfec0) return { blocked: true, reason: "site-local" }
  if ((g0 & 0xff00) === 0xff00) return { blocked: true, reason: "multicast" }
  if (g0 === 0x2001 && g1 === 0x0db8) return { blocked: true, reason: "documentation" }
  if (g0 === 0x3fff && g1 < 0x1000) return { blocked: true, reason: "documentation" }
  if (g0 === 0x2001 && g1 === 0x0002 && g2 === 0) return { blocked: true, reason: "benchmarking" }
  if (g0 === 0x2001 && g1 < 0x0200) return { blocked: true, reason: "IETF protocol assignments" }
  if (g0 === 0x0100 && g1 === 0 && g2 === 0 && g3 === 0) return { blocked: true, reason: "discard-only" }
  if (g0 === 0x5f00) return { blocked: true, reason: "SRv6 SIDs" }
  // Only 2000::/3 is global unicast; everything else is reserved.
  if ((g0 & 0xe000) !== 0x2000) return { blocked: true, reason: "not global unicast" }
  return { blocked: false }
}

/**
 * Whether an address may be dialled. Accepts every spelling `parse` does; what is not an address at
 * all is blocked too (fail closed).
 *
 * @example
 * ```ts
 * Ssrf.classify("::ffff:7f00:1") // { blocked: true, reason: "IPv4-mapped loopback" }
 * Ssrf.classify("0x7f.1")        // { blocked: true, reason: "loopback" }
 * Ssrf.classify("93.184.215.14") // { blocked: false }
 * ```
 * @category classification
 */
export const classify = (ip: string): Classification => {
  const address = parse(ip)
  if (address === undefined) return { blocked: true, reason: "not an IP address" }
  return address.family === 4 ? classifyV4(address.value) : classifyV6(address.groups)
}

// ---------------------------------------------------------------------------------------------
// Allowlist
// ---------------------------------------------------------------------------------------------

/**
 * Options of the guard.
 *
 * @category models
 */
export interface Options {
  /**
   * CIDRs (`10.1.0.0/16`, `::1/128`) or single addresses that may be dialled although they are
   * blocked: an explicit allowlist turns the guard off for those addresses only (a self-hosted target
   * on a private network, a test server on 127.0.0.1). An IPv4 entry also matches its IPv4-mapped
   * IPv6 form.
   */
  readonly allow?: ReadonlyArray<string> | undefined
}

interface Cidr {
  readonly family: 4 | 6
  readonly bits: ReadonlyArray<number>
  readonly prefix: number
}

const bitsOf = (address: Address): ReadonlyArray<number> =>
  address.family === 4 ? [address.value >>> 16, address.value & 0xffff] : address.groups

const parseCidr = (text: string): Cidr => {
  const slash = text.indexOf("/")
  const address = parse(slash < 0 ? text : text.slice(0, slash))
  if (address === undefined) throw new Error(`Ssrf allow: ${text} is not an address or CIDR`)
  const max = address.family === 4 ? 32 : 128
  const prefix = slash < 0 ? max : Number(text.slice(slash + 1))
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max)
    throw new Error(`Ssrf allow: ${text} has a bad prefix length`)
  return { family: address.family, bits: bitsOf(address), prefix }
}

const inCidr = (cidr: Cidr, address: Address): boolean => {
  if (cidr.family !== address.family) return false
  const bits = bitsOf(address)
  let left = cidr.prefix
  for (let i = 0; left > 0; i++, left -= 16) {
    const take = Math.min(16, left)
    const mask = (0xffff << (16 - take)) & 0xffff
    if ((bits[i]! & mask) !== (cidr.bits[i]! & mask)) return false
  }
  return true
}

const mappedV4 = (address: Address): Address | undefined => {
  if (address.family !== 6) return undefined
  const g = address.groups
  return g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff
    ? { family: 4, value: embedded(g[6]!, g[7]!) }
    : undefined
}

/**
 * The guard's decision for one address, allowlist included.
 *
 * @category classification
 */
export const makeCheck = (options?: Options): ((ip: string) => Classification) => {
  const allow = (options?.allow ?? []).map(parseCidr)
  return (ip) => {
    const address = parse(ip)
    if (address !== undefined && allow.length > 0) {
      const v4form = mappedV4(address)
      if (allow.some((cidr) => inCidr(cidr, address) || (v4form !== undefined && inCidr(cidr, v4form))))
        return { blocked: false }
    }
    return classify(ip)
  }
}

// ---------------------------------------------------------------------------------------------
// Resolver and connector
// ---------------------------------------------------------------------------------------------

/**
 * The error the guard fails a connection with: `code` is `ERR_SSRF_BLOCKED`; `hostname` and
 * `address` say what was refused.
 *
 * @category errors
 */
export interface BlockedError extends Error {
  readonly code: "ERR_SSRF_BLOCKED"
  readonly hostname: string
  readonly address: string
  readonly reason: string
}

const blockedError = (hostname: string, address: string, reason: string): BlockedError =>
  Object.assign(new Error(`refused to connect to ${hostname} (${address}): ${reason} address`), {
    code: "ERR_SSRF_BLOCKED" as const,
    hostname,
    address,
    reason
  })

/**
 * Is this error (or any error in its `cause` chain, as an `HttpClientError` wraps it) a refusal by
 * the guard? A dispatcher can treat it as permanent rather than retry it.
 *
 * @category errors
 */
export const isBlockedError = (u: unknown): u is BlockedError => {
  for (let e: unknown = u, depth = 0; typeof e === "object" && e !== null && depth < 8; depth++) {
    if ((e as { code?: unknown }).code === "ERR_SSRF_BLOCKED") return true
    e = (e as { cause?: unknown }).cause
  }
  return false
}

/**
 * A `dns.lookup`-compatible function that resolves a name, drops every blocked address and fails
 * with `ERR_SSRF_BLOCKED` when none is left. Pass it as the `lookup` of `net.connect`/`tls.connect`
 * (undici's `connect.lookup`) so the check is on the address the socket then dials. IP literals are
 * never looked up by Node: use `makeConnector` (or `layerHttpClient`), which checks those too.
 *
 * @category constructors
 */
export const makeLookup = (
  options?: Options & {
    /** The resolver underneath; `dns.lookup` by default (tests pass a fake to simulate rebinding). */
    readonly resolve?: typeof dns.lookup | undefined
  }
): net.LookupFunction => {
  const check = makeCheck(options)
  const resolve = options?.resolve ?? dns.lookup
  return (hostname, lookupOptions, callback) => {
    const opts: dns.LookupOptions =
      typeof lookupOptions === "object" && lookupOptions !== null
        ? lookupOptions
        : typeof lookupOptions === "number"
          ? { family: lookupOptions }
          : {}
    const cb = (
      typeof lookupOptions === "function" ? lookupOptions : callback
    ) as Parameters<net.LookupFunction>[2]
    resolve(hostname, { ...opts, all: true }, (error, addresses) => {
      if (error !== null) return cb(error, [])
      const list = addresses as ReadonlyArray<dns.LookupAddress>
      const allowed: Array<dns.LookupAddress> = []
      let refused: { address: string; reason: string } | undefined
      for (const entry of list) {
        const verdict = check(entry.address)
        if (verdict.blocked) refused ??= { address: entry.address, reason: verdict.reason }
        else allowed.push(entry)
      }
      if (allowed.length === 0) {
        const why = refused ?? { address: "(none)", reason: "no" }
        return cb(blockedError(hostname, why.address, why.reason), [])
      }
      if (opts.all === true) return cb(null, allowed)
      const first = allowed[0]!
      return cb(null, first.address, first.family)
    })
  }
}

/**
 * An undici connector that dials only allowed addresses: names resolve through `makeLookup`, and an
 * IP literal host is classified before the socket opens.
 *
 * @category constructors
 */
export const makeConnector = (
  options?: Options & { readonly connect?: Undici.buildConnector.BuildOptions | undefined }
): Undici.buildConnector.connector => {
  const check = makeCheck(options)
  const base = Undici.buildConnector({ ...options?.connect, lookup: makeLookup(options) })
  return (connectOptions, callback) => {
    const host = connectOptions.hostname
    const literal = host.startsWith("[") ? host.slice(1, -1) : host
    if (parse(literal) !== undefined) {
      const verdict = check(literal)
      if (verdict.blocked) return callback(blockedError(host, literal, verdict.reason), null)
    }
    return base(connectOptions, callback)
  }
}

/**
 * Effect's `HttpClient` over an undici Agent that dials through the guard. Redirects are not
 * followed by this client (Effect's clients follow none unless asked), which webhook delivery wants:
 * a 3xx is a failed attempt, never a second request to wherever it points.
 *
 * @example
 * ```ts
 * const DispatcherLive = Dispatcher.layer.pipe(Layer.provide(Ssrf.layerHttpClient()))
 * // a self-hosted receiver on the private network
 * Ssrf.layerHttpClient({ allow: ["10.20.0.0/16"] })
 * ```
 * @category layers
 */
export const layerHttpClient = (
  options?: Options & {
    /** Further undici Agent options (pool size, timeouts); `connect` is the guard's. */
    readonly agent?: Omit<Undici.Agent.Options, "connect"> | undefined
  }
): Layer.Layer<HttpClient.HttpClient> =>
  Layer.suspend(() =>
    NodeHttpClient.layerUndiciOptions({ ...options?.agent, connect: makeConnector(options) })
  )
