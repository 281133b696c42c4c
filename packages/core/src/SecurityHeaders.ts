/**
 * Security headers with safe defaults (the set Helmet popularised): CSP, HSTS, nosniff, frame
 * options, referrer policy, cross-origin isolation headers. Every header can be changed or turned off.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as HttpEffect from "effect/http/HttpEffect"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as Middleware from "./Middleware.ts"

/**
 * The headers and their default values. `false` leaves a header out.
 *
 * @category models
 */
export interface Options {
  readonly contentSecurityPolicy?:
    string | Readonly<Record<string, ReadonlyArray<string>>> | false | undefined
  readonly strictTransportSecurity?: string | false | undefined
  readonly contentTypeOptions?: "nosniff" | false | undefined
  readonly frameOptions?: "DENY" | "SAMEORIGIN" | false | undefined
  readonly referrerPolicy?: string | false | undefined
  readonly crossOriginOpenerPolicy?: string | false | undefined
  readonly crossOriginResourcePolicy?: string | false | undefined
  readonly originAgentCluster?: string | false | undefined
  readonly dnsPrefetchControl?: "on" | "off" | false | undefined
  readonly permittedCrossDomainPolicies?: string | false | undefined
  /** Modern browsers' XSS auditors did more harm than good: the default turns them off (`0`). */
  readonly xssProtection?: string | false | undefined
}

/**
 * The default Content-Security-Policy directives.
 *
 * @category constants
 */
export const defaultCsp: Readonly<Record<string, ReadonlyArray<string>>> = {
  "default-src": ["'self'"],
  "base-uri": ["'self'"],
  "font-src": ["'self'", "https:", "data:"],
  "form-action": ["'self'"],
  "frame-ancestors": ["'self'"],
  "img-src": ["'self'", "data:"],
  "object-src": ["'none'"],
  "script-src": ["'self'"],
  "script-src-attr": ["'none'"],
  "style-src": ["'self'", "https:", "'unsafe-inline'"],
  "upgrade-insecure-requests": []
}

const cspString = (csp: string | Readonly<Record<string, ReadonlyArray<string>>>): string =>
  typeof csp === "string"
    ? csp
    : Object.entries(csp)
        .map(([directive, values]) => [directive, ...values].join(" "))
        .join("; ")

/**
 * The headers `middleware` sets for these options.
 *
 * @category constructors
 */
export const headers = (options: Options = {}): Readonly<Record<string, string>> => {
  const pick = <A>(value: A | false | undefined, fallback: A): A | undefined =>
    value === false ? undefined : (value ?? fallback)
  const entries: Array<[string, string | undefined]> = [
    [
      "content-security-policy",
      (() => {
        const csp = pick(options.contentSecurityPolicy, defaultCsp)
        return csp === undefined ? undefined : cspString(csp)
      })()
    ],
    [
      "strict-transport-security",
      pick(options.strictTransportSecurity, "max-age=31536000; includeSubDomains")
    ],
    ["x-content-type-options", pick(options.contentTypeOptions, "nosniff")],
    ["x-frame-options", pick(options.frameOptions, "SAMEORIGIN")],
    // Not "no-referrer": with it, browsers send `Origin: null` on same-origin form posts, which an
    // Origin-based CSRF check must refuse. This default still sends nothing but the origin across sites.
    ["referrer-policy", pick(options.referrerPolicy, "strict-origin-when-cross-origin")],
    ["cross-origin-opener-policy", pick(options.crossOriginOpenerPolicy, "same-origin")],
    ["cross-origin-resource-policy", pick(options.crossOriginResourcePolicy, "same-origin")],
    ["origin-agent-cluster", pick(options.originAgentCluster, "?1")],
    ["x-dns-prefetch-control", pick(options.dnsPrefetchControl, "off")],
    ["x-permitted-cross-domain-policies", pick(options.permittedCrossDomainPolicies, "none")],
    ["x-xss-protection", pick(options.xssProtection, "0")]
  ]
  return Object.fromEntries(entries.filter((entry): entry is [string, string] => entry[1] !== undefined))
}

/**
 * Sets the security headers on every response, error responses included. A header the handler
 * set itself is kept.
 *
 * @example
 * ```ts
 * Router.use(SecurityHeaders.middleware({ contentSecurityPolicy: { ...SecurityHeaders.defaultCsp, "img-src": ["'self'", "https:"] } }))
 * ```
 * @category middleware
 */
export const middleware = (options: Options = {}) => {
  const set = headers(options)
  const names = Object.keys(set)
  return Middleware.make({
    name: "securityHeaders",
    apply: (next) =>
      HttpEffect.withPreResponseHandler(next, (_request, response) => {
        const missing: Record<string, string> = {}
        for (const name of names) if (response.headers[name] === undefined) missing[name] = set[name]!
        return Effect.succeed(HttpServerResponse.setHeaders(response, missing))
      })
  })
}
