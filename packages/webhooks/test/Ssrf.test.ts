import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as HttpClient from "effect/http/HttpClient"
import * as fc from "fast-check"
import type * as dns from "node:dns"
import { createServer, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import { Ssrf } from "../src/index.ts"
import * as Property from "@strata/core/Property"

// The oracle: IPv4 ranges no webhook may reach, written out here independently of the module's table.
const blockedV4 = [
  "0.0.0.0/8",
  "10.0.0.0/8",
  "100.64.0.0/10",
  "127.0.0.0/8",
  "169.254.0.0/16",
  "172.16.0.0/12",
  "192.0.0.0/24",
  "192.0.2.0/24",
  "192.168.0.0/16",
  "198.18.0.0/15",
  "198.51.100.0/24",
  "203.0.113.0/24",
  "224.0.0.0/4",
  "240.0.0.0/4",
  "255.255.255.255/32"
]
// Ranges allocated to regional registries and wholly public.
const publicV4 = [
  "1.0.0.0/8",
  "8.0.0.0/8",
  "13.0.0.0/8",
  "23.0.0.0/8",
  "45.0.0.0/8",
  "93.184.0.0/16",
  "104.16.0.0/12",
  "151.101.0.0/16",
  "185.0.0.0/8",
  "200.0.0.0/8",
  "223.0.0.0/8"
]

const toNumber = (dotted: string): number =>
  dotted.split(".").reduce((acc, octet) => acc * 256 + Number(octet), 0)

const inRange = (cidr: string) => {
  const [base, prefix] = cidr.split("/") as [string, string]
  const size = 2 ** (32 - Number(prefix))
  const start = toNumber(base)
  return fc.integer({ min: start, max: start + size - 1 })
}

const octets = (v: number) => [v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255] as const
const hi = (v: number) => (v >>> 16).toString(16)
const lo = (v: number) => (v & 0xffff).toString(16)

/** Every spelling of one IPv4 address that some parser on the way to a socket accepts. */
const v4Spellings = (v: number): Record<string, string> => {
  const [a, b, c, d] = octets(v)
  const dotted = `${a}.${b}.${c}.${d}`
  return {
    dotted,
    decimal: String(v),
    octal: [a, b, c, d].map((o) => `0${o.toString(8)}`).join("."),
    hex: `0x${v.toString(16)}`,
    "hex octets": [a, b, c, d].map((o) => `0x${o.toString(16)}`).join("."),
    "short a.b": `${a}.${(b << 16) | (c << 8) | d}`,
    "short a.b.c": `${a}.${b}.${(c << 8) | d}`,
    "IPv4-mapped dotted": `::ffff:${dotted}`,
    "IPv4-mapped hex": `::ffff:${hi(v)}:${lo(v)}`,
    "IPv4-mapped bracketed": `[::FFFF:${dotted}]`,
    "IPv4-compatible": `::${dotted}`,
    "6to4": `2002:${hi(v)}:${lo(v)}::1`,
    NAT64: `64:ff9b::${hi(v)}:${lo(v)}`,
    "NAT64 dotted": `64:ff9b::${dotted}`,
    // Teredo: a public server (RFC 4380's example) and the client's address with its bits inverted.
    Teredo: `2001:0:4136:e378:8000:63bf:${hi(~v >>> 0)}:${lo(~v >>> 0)}`
  }
}

const group = fc.integer({ min: 0, max: 0xffff })
const groupsWith = (first: fc.Arbitrary<number>, second: fc.Arbitrary<number> = group) =>
  fc.tuple(first, second, group, group, group, group, group, group)

const blockedV6 = fc.oneof(
  fc.constant([0, 0, 0, 0, 0, 0, 0, 1]),
  fc.constant([0, 0, 0, 0, 0, 0, 0, 0]),
  groupsWith(fc.integer({ min: 0xfc00, max: 0xfdff })),
  groupsWith(fc.integer({ min: 0xfe80, max: 0xfebf })),
  groupsWith(fc.integer({ min: 0xff00, max: 0xffff })),
  groupsWith(fc.constant(0x2001), fc.constant(0x0db8))
)
const publicV6 = groupsWith(
  fc.oneof(
    fc.integer({ min: 0x2400, max: 0x240f }),
    fc.integer({ min: 0x2600, max: 0x260f }),
    fc.integer({ min: 0x2a00, max: 0x2a0f })
  )
)

/** Spellings of one IPv6 address: compressed (by the URL parser), full, upper case, bracketed. */
const v6Spellings = (groups: ReadonlyArray<number>): Record<string, string> => {
  const full = groups.map((g) => g.toString(16).padStart(4, "0")).join(":")
  const compressed = new URL(`http://[${full}]/`).hostname.slice(1, -1)
  return { full, compressed, upper: full.toUpperCase(), bracketed: `[${compressed}]` }
}

describe("Ssrf.classify", () => {
  it("SSRF classifier over generated addresses in every encoding", () =>
    Property.effect(
      [
        fc.oneof(
          fc
            .constantFrom(...blockedV4)
            .chain(inRange)
            .map((v) => ({ v, blocked: true })),
          fc
            .constantFrom(...publicV4)
            .chain(inRange)
            .map((v) => ({ v, blocked: false }))
        ),
        fc.oneof(
          blockedV6.map((g) => ({ g, blocked: true })),
          publicV6.map((g) => ({ g, blocked: false }))
        )
      ],
      ([four, six]) =>
        Effect.sync(() => {
          for (const [encoding, text] of Object.entries(v4Spellings(four.v))) {
            expect(Ssrf.classify(text).blocked, `${encoding} ${text}`).toBe(four.blocked)
          }
          for (const [encoding, text] of Object.entries(v6Spellings(six.g))) {
            expect(Ssrf.classify(text).blocked, `${encoding} ${text}`).toBe(six.blocked)
          }
        }),
      { numRuns: 500 }
    ))

  it("names the reason, through the wrappers", () => {
    expect(Ssrf.classify("::ffff:127.0.0.1")).toEqual({ blocked: true, reason: "IPv4-mapped loopback" })
    expect(Ssrf.classify("::ffff:7f00:1")).toEqual({ blocked: true, reason: "IPv4-mapped loopback" })
    expect(Ssrf.classify("2002:a00:1::")).toEqual({ blocked: true, reason: "6to4 private" })
    expect(Ssrf.classify("64:ff9b::a9fe:a9fe")).toEqual({ blocked: true, reason: "NAT64 link-local" })
    expect(Ssrf.classify("169.254.169.254")).toEqual({ blocked: true, reason: "link-local" })
    expect(Ssrf.classify("0177.0.0.1")).toEqual({ blocked: true, reason: "loopback" })
    expect(Ssrf.classify("0x7f.1")).toEqual({ blocked: true, reason: "loopback" })
    expect(Ssrf.classify("127.1")).toEqual({ blocked: true, reason: "loopback" })
    expect(Ssrf.classify("2130706433")).toEqual({ blocked: true, reason: "loopback" })
    expect(Ssrf.classify("fe80::1%eth0")).toEqual({ blocked: true, reason: "link-local" })
    expect(Ssrf.classify("255.255.255.255")).toEqual({ blocked: true, reason: "broadcast" })
    expect(Ssrf.classify("100.64.0.1")).toEqual({ blocked: true, reason: "shared address space (CGNAT)" })
    expect(Ssrf.classify("93.184.215.14")).toEqual({ blocked: false })
    expect(Ssrf.classify("2606:4700:4700::1111")).toEqual({ blocked: false })
    expect(Ssrf.classify("8.8.8.8")).toEqual({ blocked: false })
  })

  it("fails closed on what is not an address", () => {
    for (const text of [
      "example.com",
      "",
      "1.2.3.4.5",
      "127.0.0.1/32",
      "::1::2",
      "[::1",
      "08.1.1.1",
      "1.2.3.4:80"
    ]) {
      expect(Ssrf.classify(text).blocked, text).toBe(true)
    }
  })
})

const lookupWith = (
  lookup: ReturnType<typeof Ssrf.makeLookup>,
  hostname: string,
  options: dns.LookupOptions
) =>
  new Promise<{ error: NodeJS.ErrnoException | null; address: string | ReadonlyArray<dns.LookupAddress> }>(
    (resolve) =>
      lookup(
        hostname,
        options,
        (error: NodeJS.ErrnoException | null, address: string | Array<dns.LookupAddress>) =>
          resolve({ error, address })
      )
  )

/** A resolver that answers from a table, as a rebinding DNS server would. */
const fakeResolver = (table: Record<string, ReadonlyArray<dns.LookupAddress>>): typeof dns.lookup =>
  ((hostname: string, _options: dns.LookupOptions, callback: (...args: Array<unknown>) => void) => {
    const answer = table[hostname]
    if (answer === undefined)
      callback(Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: "ENOTFOUND" }), [])
    else callback(null, answer)
  }) as unknown as typeof dns.lookup

describe("Ssrf.makeLookup", () => {
  it("refuses localhost, and allows an allowlisted 127.0.0.1", async () => {
    const refused = await lookupWith(Ssrf.makeLookup(), "localhost", {})
    expect(refused.error).not.toBeNull()
    expect(Ssrf.isBlockedError(refused.error)).toBe(true)
    expect(refused.error?.message).toContain("loopback")

    const allowed = await lookupWith(Ssrf.makeLookup({ allow: ["127.0.0.1/32"] }), "localhost", { family: 4 })
    expect(allowed).toEqual({ error: null, address: "127.0.0.1" })
    const all = await lookupWith(Ssrf.makeLookup({ allow: ["127.0.0.0/8"] }), "localhost", { all: true })
    expect(all.address).toContainEqual({ address: "127.0.0.1", family: 4 })
    // The allowlist opens only what it names: ::1 stays shut.
    expect(all.address).not.toContainEqual({ address: "::1", family: 6 })
  })

  it("catches a name that resolves to a blocked address (rebinding), and keeps the public ones", async () => {
    const resolve = fakeResolver({
      "rebind.example": [{ address: "169.254.169.254", family: 4 }],
      "mixed.example": [
        { address: "10.0.0.5", family: 4 },
        { address: "93.184.215.14", family: 4 },
        { address: "::ffff:7f00:1", family: 6 }
      ]
    })
    const lookup = Ssrf.makeLookup({ resolve })
    const rebound = await lookupWith(lookup, "rebind.example", {})
    expect(Ssrf.isBlockedError(rebound.error)).toBe(true)
    expect(await lookupWith(lookup, "mixed.example", {})).toEqual({ error: null, address: "93.184.215.14" })
    expect(await lookupWith(lookup, "mixed.example", { all: true })).toEqual({
      error: null,
      address: [{ address: "93.184.215.14", family: 4 }]
    })
    const missing = await lookupWith(lookup, "nowhere.example", {})
    expect(missing.error?.code).toBe("ENOTFOUND")
  })

  it("refuses bad allowlist entries at startup", () => {
    expect(() => Ssrf.makeLookup({ allow: ["10.0.0.0/33"] })).toThrow()
    expect(() => Ssrf.makeLookup({ allow: ["intranet"] })).toThrow()
  })
})

const listen = (): Promise<{ server: Server; port: number }> =>
  new Promise((resolve) => {
    const server = createServer((_req, res) => res.writeHead(204).end())
    server.listen(0, "127.0.0.1", () => resolve({ server, port: (server.address() as AddressInfo).port }))
  })

const statusOrError = (url: string, options?: Ssrf.Options) =>
  HttpClient.get(url).pipe(
    Effect.map((response) => response.status),
    Effect.catch((error) =>
      Effect.succeed(Ssrf.isBlockedError(error) ? "blocked" : `error: ${String(error)}`)
    ),
    Effect.provide(Ssrf.layerHttpClient(options))
  )

describe("Ssrf.layerHttpClient", () => {
  it.live("dials through the guard: IP literals, odd spellings and names, unless allowlisted", () =>
    Effect.acquireUseRelease(
      Effect.promise(listen),
      ({ port }) =>
        Effect.gen(function* () {
          expect(yield* statusOrError(`http://127.0.0.1:${port}/`)).toBe("blocked")
          expect(yield* statusOrError(`http://2130706433:${port}/`)).toBe("blocked")
          expect(yield* statusOrError(`http://0x7f.1:${port}/`)).toBe("blocked")
          expect(yield* statusOrError(`http://[::ffff:127.0.0.1]:${port}/`)).toBe("blocked")
          expect(yield* statusOrError(`http://localhost:${port}/`)).toBe("blocked")
          expect(yield* statusOrError(`http://127.0.0.1:${port}/`, { allow: ["127.0.0.1/32"] })).toBe(204)
          expect(yield* statusOrError(`http://localhost:${port}/`, { allow: ["127.0.0.1", "::1"] })).toBe(204)
        }),
      ({ server }) => Effect.promise(() => new Promise<void>((resolve) => server.close(() => resolve())))
    )
  )
})
