/**
 * The example's user directory: three demo users with scrypt-hashed passwords, checked in constant
 * time. An app-wide service; a real app would read a database.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { randomBytes, scryptSync, timingSafeEqual } from "node:crypto"

export interface User {
  readonly id: string
  readonly name: string
  readonly role: "admin" | "member"
}

export class Users extends Context.Service<
  Users,
  {
    readonly find: (id: string) => Effect.Effect<User | undefined>
    /** The user if the password matches; every attempt costs one scrypt, known user or not. */
    readonly authenticate: (
      username: string,
      password: Redacted.Redacted<string>
    ) => Effect.Effect<User | undefined>
  }
>()("example-chat/Users") {}

/** Demo logins, printed by `main.ts` and shown on the login page. */
export const demoLogins = [
  { username: "alice", password: "alice-password", user: { id: "alice", name: "Alice", role: "admin" } },
  { username: "bob", password: "bob-password", user: { id: "bob", name: "Bob", role: "member" } },
  { username: "carol", password: "carol-password", user: { id: "carol", name: "Carol", role: "member" } }
] as const satisfies ReadonlyArray<{ username: string; password: string; user: User }>

const hash = (password: string, salt: Buffer) => scryptSync(password, salt, 32)

export const layer = Layer.sync(Users)(() => {
  const records = new Map<string, { readonly salt: Buffer; readonly digest: Buffer; readonly user: User }>(
    demoLogins.map(({ username, password, user }) => {
      const salt = randomBytes(16)
      return [username, { salt, digest: hash(password, salt), user }] as const
    })
  )
  // Unknown users are checked against a dummy record, so timing does not tell who exists.
  const dummy = { salt: randomBytes(16), digest: randomBytes(32) }
  return Users.of({
    find: (id) => Effect.sync(() => [...records.values()].find((r) => r.user.id === id)?.user),
    authenticate: (username, password) =>
      Effect.sync(() => {
        const record = records.get(username)
        const { salt, digest } = record ?? dummy
        const ok = timingSafeEqual(hash(Redacted.value(password), salt), digest)
        return ok && record !== undefined ? record.user : undefined
      })
  })
})
