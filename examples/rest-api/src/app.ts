/**
 * The REST example: HTML pages with a session login and CSRF-protected forms, and a JSON notes API
 * for bearer-token clients. Request ids, logs, security headers, rate limits, Schema-validated
 * bodies and typed errors throughout.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as HttpRouter from "effect/http/HttpRouter"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { randomBytes } from "node:crypto"
import {
  Body,
  HttpError,
  Logger,
  RateLimit,
  RequestId,
  Route,
  Router,
  SecurityHeaders,
  Session
} from "@strata/core"
import { admin, anyUser, bearer, CurrentUser, session } from "./Auth.ts"
import * as NotesModule from "./Notes.ts"
import { Notes } from "./Notes.ts"
import * as Users from "./Users.ts"
import { pages } from "./pages.ts"

class NoteNotFound extends HttpError.Class("NoteNotFound", { status: 404, message: "No such note" })<{
  readonly id: string
}> {}

/** The body `POST /api/notes` decodes. */
export const NoteInput = Schema.Struct({
  title: Schema.String.check(Schema.isMinLength(1), Schema.isMaxLength(200)),
  body: Schema.String.check(Schema.isMaxLength(10_000))
})

const noteId = Effect.map(HttpRouter.params, (params) => params["id"] ?? "")

const listNotes = Route.get(
  "/notes",
  Effect.gen(function* () {
    const user = yield* CurrentUser
    return HttpServerResponse.jsonUnsafe(yield* (yield* Notes).list(user.id))
  })
)

const createNote = Route.post(
  "/notes",
  Effect.gen(function* () {
    const user = yield* CurrentUser
    const input = yield* Body.json(NoteInput)
    const note = yield* (yield* Notes).create({ owner: user.id, ...input })
    return HttpServerResponse.jsonUnsafe(note, { status: 201 })
  })
)

const getNote = Route.get(
  "/notes/:id",
  Effect.gen(function* () {
    const user = yield* CurrentUser
    const id = yield* noteId
    const note = yield* (yield* Notes).find(id)
    // Someone else's note is as absent as a missing one: no hint that the id exists.
    if (note === undefined || note.owner !== user.id) return yield* new NoteNotFound({ id })
    return HttpServerResponse.jsonUnsafe(note)
  })
)

const deleteAnyNote = Route.del(
  "/notes/:id",
  Effect.gen(function* () {
    const by = yield* CurrentUser
    const id = yield* noteId
    if (!(yield* (yield* Notes).remove(id))) return yield* new NoteNotFound({ id })
    yield* Effect.logInfo("note deleted").pipe(Effect.annotateLogs({ noteId: id, by: by.id }))
    return HttpServerResponse.empty({ status: 204 })
  })
)

const me = Route.get(
  "/me",
  Effect.gen(function* () {
    const user = yield* CurrentUser
    return HttpServerResponse.jsonUnsafe(user)
  })
)

const health = Route.get("/health", HttpServerResponse.text("ok"))

const perUser = RateLimit.middleware({
  name: "api",
  limit: 100,
  window: "1 minute",
  key: RateLimit.byService(CurrentUser, (u) => u.id)
})

/**
 * The JSON API. `requireEverywhere` makes any API route that forgets auth a compile error (and a
 * start-up error).
 */
const api = Router.requireEverywhere(
  Router.group("/api", [
    // Either a bearer token or the browser's session (a safe method: no CSRF token needed).
    Router.group("", [me]).pipe(Router.use(anyUser)),
    Router.group("", [
      listNotes,
      createNote,
      getNote,
      Router.group("/admin", [deleteAnyNote]).pipe(Router.use(admin))
    ]).pipe(Router.use(bearer, perUser))
  ]),
  CurrentUser
)

const { "upgrade-insecure-requests": _upgrade, ...demoCsp } = SecurityHeaders.defaultCsp

/** The whole app; `keys` sign the session cookies. */
export const makeApp = (keys: ReadonlyArray<Redacted.Redacted<string>>) => {
  const sessions = session(keys)
  return Router.make([health, pages(sessions), Router.group("", [api]).pipe(Router.use(sessions))]).pipe(
    Router.use(
      RequestId.middleware(),
      Logger.middleware(),
      // The demo runs on plain http://127.0.0.1: no HSTS, and no upgrading of its form posts.
      SecurityHeaders.middleware({ strictTransportSecurity: false, contentSecurityPolicy: demoCsp })
    )
  )
}

/** The app with a signing key made for this process (tests, quick starts): sessions end with it. */
export const app = makeApp([Redacted.make(randomBytes(32).toString("base64url"))])

/** Every app service in memory: notes, users, sessions, rate-limit counters. */
export const layerMemory = Layer.mergeAll(
  NotesModule.layerMemory,
  Users.layer,
  Session.layerMemory(),
  RateLimit.layerMemory()
)
