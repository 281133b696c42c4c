/**
 * The few HTML helpers both apps' pages use: escaping, a page shell, and time formatting.
 */
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { SecurityHeaders } from "@strata/core"

/** Escapes text for HTML content and quoted attribute values. */
export const escape = (text: string): string =>
  text.replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!
  )

/** An epoch-milliseconds time as ISO 8601, or `null`. */
export const iso = (millis: number | null): string | null =>
  millis === null ? null : new Date(millis).toISOString()

/** A time for people: `12:03:04.120` today's UTC clock, enough to watch retries go by. */
export const clock = (millis: number | null): string =>
  millis === null ? "–" : new Date(millis).toISOString().slice(11, 23)

/** Minor units as an amount: `3998 EUR` → `39.98 EUR`. */
export const money = (m: { readonly amount: number; readonly currency: string }): string =>
  `${(m.amount / 100).toFixed(2)} ${m.currency}`

const style =
  "body{font-family:system-ui,sans-serif;max-width:64rem;margin:1.5rem auto;padding:0 1rem}" +
  "table{border-collapse:collapse;width:100%;margin:.5rem 0 1.5rem}" +
  "td,th{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}" +
  "code{font-size:.85em}form.inline{display:inline}.muted{color:#666}" +
  ".delivered{color:#070}.failed,.disabled{color:#b00}.pending{color:#a60}" +
  "fieldset{margin:.5rem 0}input{margin:.1rem}"

/** A whole page; `refresh` reloads it every that many seconds (to watch deliveries happen). */
export const page = (title: string, body: string, options: { readonly refresh?: number } = {}) =>
  HttpServerResponse.html(
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escape(title)}</title>` +
      (options.refresh === undefined ? "" : `<meta http-equiv="refresh" content="${options.refresh}">`) +
      `<style>${style}</style></head><body>${body}</body></html>`
  )

const { "upgrade-insecure-requests": _upgrade, ...demoCsp } = SecurityHeaders.defaultCsp

/** The security headers of both apps. */
export const securityHeaders = SecurityHeaders.middleware({
  // The demo runs on plain http://127.0.0.1: no HSTS, and no upgrading of its form posts.
  strictTransportSecurity: false,
  contentSecurityPolicy: demoCsp,
  // With `no-referrer` (the default) browsers send `Origin: null` on same-origin form posts, which
  // the CSRF check refuses; `same-origin` keeps the real Origin on our own forms and still sends
  // nothing to other sites.
  referrerPolicy: "same-origin"
})
