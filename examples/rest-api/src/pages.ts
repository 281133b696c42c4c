/**
 * The HTML side of the example: a login form, the user's notes with a form to add one, logout, and
 * an admin-only delete button. Every form carries the CSRF token; sessions live in the store.
 */
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as HttpRouter from "effect/http/HttpRouter"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { Body, Csrf, HttpError, RateLimit, Route, Router } from "@strata/core"
import { AppSession, CurrentUser, admin, sessionUser } from "./Auth.ts"
import { Notes } from "./Notes.ts"
import { Users, type User } from "./Users.ts"

const escape = (text: string) =>
  text.replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!
  )

const page = (title: string, body: string) =>
  HttpServerResponse.html(
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escape(title)}</title>` +
      `<style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto}li{margin:.3rem 0}` +
      `.flash{background:#eef;padding:.5rem}</style></head><body>${body}</body></html>`
  )

const redirect = (to: string) => HttpServerResponse.redirect(to, { status: 303 })

/** Reads the flash message once. */
const takeFlash = Effect.gen(function* () {
  const session = yield* AppSession
  const flash = yield* session.get("flash")
  if (flash !== undefined) yield* session.delete("flash")
  return flash === undefined ? "" : `<p class="flash">${escape(flash)}</p>`
})

const loggedInUser = Effect.gen(function* () {
  const id = yield* (yield* AppSession).get("userId")
  return id === undefined ? undefined : yield* (yield* Users).find(id)
})

const home = Route.get(
  "/",
  Effect.gen(function* () {
    const token = yield* Csrf.token
    const flash = yield* takeFlash
    const user: User | undefined = yield* loggedInUser
    if (user === undefined) {
      return page(
        "Notes: log in",
        `<h1>Notes</h1>${flash}<form method="post" action="/login">${Csrf.hiddenInput(token)}` +
          `<label>User <input name="username" autocomplete="username"></label> ` +
          `<label>Password <input name="password" type="password" autocomplete="current-password"></label> ` +
          `<button>Log in</button></form>`
      )
    }
    const notes = yield* (yield* Notes).list(user.id)
    const items = notes
      .map(
        (n) =>
          `<li><strong>${escape(n.title)}</strong> ${escape(n.body)}` +
          (user.role === "admin"
            ? ` <form method="post" action="/admin/notes/${escape(n.id)}/delete" style="display:inline">` +
              `${Csrf.hiddenInput(token)}<button>delete</button></form>`
            : "") +
          `</li>`
      )
      .join("")
    return page(
      "Notes",
      `<h1>Notes of ${escape(user.name)}</h1>${flash}<ul id="notes">${items}</ul>` +
        `<form method="post" action="/notes">${Csrf.hiddenInput(token)}` +
        `<input name="title" placeholder="title" required> <input name="body" placeholder="text"> ` +
        `<button>Add</button></form>` +
        `<form method="post" action="/logout">${Csrf.hiddenInput(token)}<button>Log out</button></form>`
    )
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

const NoteForm = Schema.Struct({
  title: Schema.String.check(Schema.isMinLength(1), Schema.isMaxLength(200)),
  body: Schema.String.check(Schema.isMaxLength(10_000))
})

const createNote = Route.post(
  "/notes",
  Effect.gen(function* () {
    const user = yield* CurrentUser
    const form = yield* Body.form(NoteForm)
    yield* (yield* Notes).create({ owner: user.id, ...form })
    return redirect("/")
  })
)

const deleteNote = Route.post(
  "/notes/:id/delete",
  Effect.gen(function* () {
    const id = (yield* HttpRouter.params)["id"] ?? ""
    if (!(yield* (yield* Notes).remove(id))) return yield* new HttpError.NotFound()
    return redirect("/")
  })
)

/**
 * The pages. The session and the CSRF check wrap every page; writing notes needs a logged-in user;
 * deleting needs an admin; logging in is limited to 5 attempts a minute per client address.
 */
export const pages = (session: ReturnType<typeof import("./Auth.ts").session>) =>
  Router.make([
    home,
    logout,
    Router.group("", [login]).pipe(
      Router.use(RateLimit.middleware({ name: "login", limit: 5, window: "1 minute" }))
    ),
    Router.group("", [createNote]).pipe(Router.use(sessionUser)),
    Router.group("/admin", [deleteNote]).pipe(Router.use(sessionUser, admin))
  ]).pipe(Router.use(session, Csrf.synchronizer({ session: AppSession })))
