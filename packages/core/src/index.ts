/**
 * Strata core: typed middleware for Effect 4 HTTP. Every request-scoped service a handler reads must
 * be provided by a middleware on its route, and every error must have a response, or it does not
 * compile.
 *
 * @since 0.1.0
 */
export * as App from "./App.ts"
export * as Auth from "./Auth.ts"
export * as Authz from "./Authz.ts"
export * as Body from "./Body.ts"
export * as Compression from "./Compression.ts"
export * as Conditional from "./Conditional.ts"
export * as Cookies from "./Cookies.ts"
export * as Cors from "./Cors.ts"
export * as Csrf from "./Csrf.ts"
export * as HttpError from "./HttpError.ts"
export * as Logger from "./Logger.ts"
export * as Middleware from "./Middleware.ts"
export * as Observability from "./Observability.ts"
export * as RateLimit from "./RateLimit.ts"
export * as RequestId from "./RequestId.ts"
export * as Route from "./Route.ts"
export * as Router from "./Router.ts"
export * as SecurityHeaders from "./SecurityHeaders.ts"
export * as Session from "./Session.ts"
export * as Static from "./Static.ts"
export * as Timeout from "./Timeout.ts"
export * as TrustedProxy from "./TrustedProxy.ts"
