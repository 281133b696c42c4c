/**
 * Proxy awareness: behind trusted proxies, the client's address and protocol come from
 * `Forwarded` (RFC 7239) or `X-Forwarded-For`/`-Proto`/`-Host`. Off unless this middleware is used;
 * rate limits and logs then see the real client.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Result from "effect/Result"
import * as HttpMiddleware from "effect/http/HttpMiddleware"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as IpNetwork from "effect/net/IpNetwork"
import * as NetAddress from "effect/net/NetAddress"
import * as Middleware from "./Middleware.ts"

/**
 * Which peers are proxies whose forwarding headers are believed: CIDR strings
 * (`"10.0.0.0/8"`, `"::1/128"`) or a predicate on the peer address.
 *
 * @category models
 */
export type Trusted = ReadonlyArray<string> | ((address: string) => boolean)

const parseIp = (input: string): NetAddress.IpAddress | undefined => {
  const bare = input.startsWith("[") ? input.slice(1, input.indexOf("]")) : input
  const ip = NetAddress.ipFromString(bare)
  if (Result.isSuccess(ip)) return NetAddress.toCanonical(ip.success)
  const inet = NetAddress.inetAddressFromString(input)
  return Result.isSuccess(inet) ? NetAddress.toCanonical(inet.success.address) : undefined
}

const trustPredicate = (trusted: Trusted): ((address: NetAddress.IpAddress) => boolean) => {
  if (typeof trusted === "function") return (address) => trusted(NetAddress.formatIp(address))
  const networks = trusted.map((cidr) => {
    const network = IpNetwork.fromString(
      cidr.includes("/") ? cidr : `${cidr}/${cidr.includes(":") ? 128 : 32}`
    )
    if (Result.isFailure(network)) throw new Error(`TrustedProxy: not a network: ${cidr}`)
    return network.success
  })
  return (address) => networks.some((network) => IpNetwork.contains(network, address))
}

/** The `for=` and `proto=` of each hop of a `Forwarded` header, first hop first. */
const parseForwarded = (header: string): Array<{ readonly for?: string; readonly proto?: string }> =>
  header.split(",").map((element) => {
    const hop: { for?: string; proto?: string } = {}
    for (const pair of element.split(";")) {
      const eq = pair.indexOf("=")
      if (eq === -1) continue
      const name = pair.slice(0, eq).trim().toLowerCase()
      let value = pair.slice(eq + 1).trim()
      if (value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1)
      if (name === "for") hop.for = value
      if (name === "proto") hop.proto = value.toLowerCase()
    }
    return hop
  })

/**
 * Replaces the request's `remoteAddress` (and protocol, host) with what trusted proxies forwarded:
 * the rightmost address not itself a trusted proxy. A peer that is not trusted is taken as the
 * client, whatever headers it sends.
 *
 * @example
 * ```ts
 * Router.use(TrustedProxy.middleware({ trusted: ["10.0.0.0/8"] }), RequestId.middleware(), Logger.middleware())
 * ```
 * @category middleware
 */
export const middleware = (options: { readonly trusted: Trusted }) => {
  const isTrusted = trustPredicate(options.trusted)
  const xForwarded = HttpMiddleware.xForwardedHeaders({ trustedProxies: isTrusted })
  const fromForwarded = (request: HttpServerRequest.HttpServerRequest) => {
    const header = request.headers["forwarded"]
    const peerText =
      Option.getOrUndefined(request.peerAddress) ?? Option.getOrUndefined(request.remoteAddress)
    const peer = peerText === undefined ? undefined : parseIp(peerText)
    if (header === undefined || peer === undefined || !isTrusted(peer)) return undefined
    const hops = parseForwarded(header)
    for (let index = hops.length - 1; index >= 0; index--) {
      const hop = hops[index]!
      const address = hop.for === undefined ? undefined : parseIp(hop.for)
      if (address === undefined) return request
      if (index > 0 && isTrusted(address)) continue
      return request.modify({
        remoteAddress: Option.some(NetAddress.formatIp(address)),
        ...(hop.proto === "http" || hop.proto === "https" ? { protocol: hop.proto } : {})
      })
    }
    return request
  }
  return Middleware.make({
    name: "trustedProxy",
    apply: (next) =>
      Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
        const forwarded = fromForwarded(request)
        return forwarded === undefined
          ? (xForwarded(next) as typeof next)
          : Effect.provideService(next, HttpServerRequest.HttpServerRequest, forwarded)
      })
  })
}
