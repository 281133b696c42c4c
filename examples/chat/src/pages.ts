/**
 * The HTML side: a login form (CSRF-protected, rate-limited) and the chat page, whose script
 * connects to the channel with the session cookie. The page carries no inline script: its module
 * comes from this server, and the CSP allows the import map by its hash.
 */
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { Body, Csrf, RateLimit, Route, Router } from "@strata/core"
import { AppSession } from "./Auth.ts"
import { importMapTag, pageScript, styleSheet } from "./Assets.ts"
import { maxText, rooms } from "./Chat.ts"
import { demoLogins, type User, Users } from "./Users.ts"

const escape = (text: string) =>
  text.replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!
  )

const page = (title: string, head: string, body: string) =>
  HttpServerResponse.html(
    `<!doctype html><html lang="en"><head><meta charset="utf-8">` +
      `<meta name="viewport" content="width=device-width, initial-scale=1">` +
      `<title>${escape(title)}</title><link rel="icon" href="data:,">` +
      `<link rel="stylesheet" href="${styleSheet}">${head}</head>${body}</html>`
  )

const redirect = (to: string) => HttpServerResponse.redirect(to, { status: 303 })

/** Reads the flash message once. */
const takeFlash = Effect.gen(function* () {
  const session = yield* AppSession
  const flash = yield* session.get("flash")
  if (flash !== undefined) yield* session.delete("flash")
  return flash === undefined ? "" : `<p class="flash" role="alert">${escape(flash)}</p>`
})

const loginPage = (token: string, flash: string) =>
  page(
    "Strata chat: log in",
    "",
    `<body><main class="login"><h1>Strata chat</h1>${flash}` +
      `<form method="post" action="/login">${Csrf.hiddenInput(token)}` +
      `<label>User <input id="username" name="username" autocomplete="username" required></label>` +
      `<label>Password <input id="password" name="password" type="password" autocomplete="current-password" required></label>` +
      `<button>Log in</button></form>` +
      `<p>Demo users: ${demoLogins.map((l) => `<code>${l.username}</code> / <code>${l.password}</code>${l.user.role === "admin" ? " (admin)" : ""}`).join(", ")}.</p>` +
      `</main></body>`
  )

const chatPage = (token: string, user: User) =>
  page(
    "Strata chat",
    `${importMapTag}<script type="module" src="${pageScript}"></script>`,
    `<body data-user-id="${escape(user.id)}" data-user-name="${escape(user.name)}">` +
      `<header><h1>Strata chat</h1><p id="status" data-state="connecting">Connecting…</p>` +
      `<p>Signed in as <strong>${escape(user.name)}</strong></p>` +
      `<form method="post" action="/logout">${Csrf.hiddenInput(token)}<button>Log out</button></form></header>` +
      `<main><nav aria-label="Rooms"><h2>Rooms</h2><ul id="rooms">` +
      rooms
        .map(
          (r) =>
            `<li><button type="button" data-room="${escape(r.id)}">${escape(r.title)}` +
            `${r.adminsOnly ? " (admins)" : ""}</button></li>`
        )
        .join("") +
      `</ul></nav>` +
      `<section aria-labelledby="room-title"><h2 id="room-title">…</h2><p id="notice" role="status"></p>` +
      `<ol id="messages" aria-live="polite"></ol>` +
      `<form id="say" autocomplete="off"><input id="text" name="text" maxlength="${maxText}" ` +
      `placeholder="Write a message" aria-label="Message" required><button>Send</button></form></section>` +
      `<aside aria-labelledby="members-title"><h2 id="members-title">Here now</h2><ul id="members"></ul></aside>` +
      `</main></body>`
  )

const home = Route.get(
  "/",
  Effect.gen(function* () {
    const token = yield* Csrf.token
    const id = yield* (yield* AppSession).get("userId")
    const user = id === undefined ? undefined : yield* (yield* Users).find(id)
    return user === undefined ? loginPage(token, yield* takeFlash) : chatPage(token, user)
  })
)

const LoginForm = Schema.Struct({ username: Schema.String, password: Schema.String })

const login = Route.post(
  "/login",
  Effect.gen(function* () {
    const form = yield* Body.form(LoginForm)
    const user = yield* (yield* Users).authenticate(form.username, Redacted.make(form.password))
    const session = yield* AppSession
    if (user === undefined) {
      yield* session.set("flash", "Wrong user name or password")
      return redirect("/")
    }
    // A new session id on login: an id planted before login is worth nothing after it.
    yield* session.regenerate
    yield* session.set("userId", user.id)
    return redirect("/")
  })
)

const logout = Route.post(
  "/logout",
  Effect.as(
    Effect.flatMap(AppSession, (s) => s.destroy),
    redirect("/")
  )
)

/**
 * The pages, behind the session and the CSRF check; logging in is limited to 10 attempts a
 * minute per client address.
 */
export const pages = (session: ReturnType<typeof import("./Auth.ts").session>) =>
  Router.make([
    home,
    logout,
    Router.group("", [login]).pipe(
      Router.use(RateLimit.middleware({ name: "login", limit: 10, window: "1 minute" }))
    )
  ]).pipe(Router.use(session, Csrf.synchronizer({ session: AppSession })))
