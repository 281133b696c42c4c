import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as TestClock from "effect/testing/TestClock"
import * as Octokit from "@octokit/webhooks-methods"
import * as fc from "fast-check"
import { createPublicKey, verify as cryptoVerify } from "node:crypto"
import { Webhook } from "standardwebhooks"
import Stripe from "stripe"
import { Signature } from "../src/index.ts"
import * as Property from "@strata/core/Property"

const vector = {
  secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
  id: "msg_p5jXN8AQM9LWM0D4loKWxJek",
  timestamp: 1614265330,
  payload: '{"test": 2432232314}',
  signature: "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
  ed25519Seed: "VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk=",
  ed25519Signature:
    "v1a,tQ9V2XOqn7jL/DQenEFpqIugdBVtiMmER5mhSkXBNwM0mkATuDe6KYYUuxqtaiHeYGb7KaaBRdM5WqyeFiL8Ag=="
}

const at = (unixSeconds: number) => ({ now: new Date(unixSeconds * 1000) })

const nowSeconds = () => Math.floor(Date.now() / 1000)

/** Checks a v1a entry with node:crypto alone, from the raw `whpk_` key (via JWK, not our DER path). */
const ed25519Verifies = (publicKey: string, content: string, entry: string): boolean => {
  const raw = Buffer.from(publicKey.slice("whpk_".length), "base64")
  const key = createPublicKey({
    key: { kty: "OKP", crv: "Ed25519", x: raw.toString("base64url") },
    format: "jwk"
  })
  return cryptoVerify(null, Buffer.from(content), key, Buffer.from(entry.slice("v1a,".length), "base64"))
}

const failureTag = <A, E extends { readonly _tag: string }>(effect: Effect.Effect<A, E>) =>
  Effect.runPromise(Effect.match(effect, { onFailure: (e) => e._tag, onSuccess: () => "Success" }))

describe("Signature: reference vectors", () => {
  it("signs the Standard Webhooks v1 test vector", () => {
    const headers = Signature.sign({ id: vector.id, timestamp: vector.timestamp, payload: vector.payload }, [
      Signature.secretV1(vector.secret)
    ])
    expect(headers).toEqual({
      "webhook-id": vector.id,
      "webhook-timestamp": String(vector.timestamp),
      "webhook-signature": vector.signature
    })
  })

  it("signs the Standard Webhooks v1a (ed25519) test vector", () => {
    const headers = Signature.sign({ id: vector.id, timestamp: vector.timestamp, payload: vector.payload }, [
      Signature.secretV1a(`whsk_${vector.ed25519Seed}`)
    ])
    expect(headers["webhook-signature"]).toBe(vector.ed25519Signature)
  })

  it.effect("verifies the vectors at their time", () =>
    Effect.gen(function* () {
      const headers = {
        "webhook-id": vector.id,
        "webhook-timestamp": String(vector.timestamp),
        "webhook-signature": `${vector.signature} ${vector.ed25519Signature}`
      }
      const v1 = yield* Signature.verify(
        headers,
        vector.payload,
        [Signature.secretV1(vector.secret)],
        at(vector.timestamp)
      )
      expect(v1).toEqual({ id: vector.id, timestamp: vector.timestamp })
      const publicKey = Signature.secretV1a(`whsk_${vector.ed25519Seed}`)
      if (publicKey.version !== "v1a") throw new Error("expected a v1a key")
      const v1a = yield* Signature.verify(
        headers,
        vector.payload,
        [Signature.publicKeyV1a(publicKey.publicKey)],
        at(vector.timestamp + 299)
      )
      expect(v1a.id).toBe(vector.id)
    })
  )
})

describe("Signature: independent checkers", () => {
  it("our v1 signatures verify with the standardwebhooks package", () => {
    const secret = Signature.generateV1()
    if (secret.version !== "v1") throw new Error("expected v1")
    const payload = JSON.stringify({ type: "user.created", data: { id: "ü 1" } })
    const headers = Signature.sign({ id: "msg_1", timestamp: nowSeconds(), payload }, [secret])
    expect(new Webhook(Redacted.value(secret.key)).verify(payload, { ...headers })).toEqual(
      JSON.parse(payload)
    )
    expect(() => new Webhook(Redacted.value(secret.key)).verify(payload + " ", { ...headers })).toThrow()
  })

  it("standardwebhooks signatures verify with ours", async () => {
    const secret = Signature.generateV1()
    if (secret.version !== "v1") throw new Error("expected v1")
    const payload = '{"hello":"world"}'
    const now = nowSeconds()
    const signature = new Webhook(Redacted.value(secret.key)).sign("msg_2", new Date(now * 1000), payload)
    const headers = {
      "webhook-id": "msg_2",
      "webhook-timestamp": String(now),
      "webhook-signature": signature
    }
    const verified = await Effect.runPromise(Signature.verify(headers, payload, [secret], at(now)))
    expect(verified).toEqual({ id: "msg_2", timestamp: now })
    expect(await failureTag(Signature.verify(headers, payload, [Signature.generateV1()], at(now)))).toBe(
      "InvalidSignature"
    )
  })

  it("v1a signatures verify with node:crypto's ed25519", () => {
    const secret = Signature.generateV1a()
    if (secret.version !== "v1a") throw new Error("expected v1a")
    expect(secret.publicKey).toMatch(/^whpk_/)
    expect(Redacted.value(secret.privateKey)).toMatch(/^whsk_/)
    const headers = Signature.sign({ id: "msg_3", timestamp: 1_700_000_000, payload: "{}" }, [secret])
    const entry = headers["webhook-signature"]
    expect(ed25519Verifies(secret.publicKey, "msg_3.1700000000.{}", entry)).toBe(true)
    expect(ed25519Verifies(secret.publicKey, "msg_3.1700000000.{ }", entry)).toBe(false)
  })

  it.effect("rotation: two secrets give two entries, and each verifies alone", () =>
    Effect.gen(function* () {
      const old = Signature.generateV1()
      const fresh = Signature.generateV1()
      const edge = Signature.generateV1a()
      const now = nowSeconds()
      const payload = '{"x":1}'
      const headers = Signature.sign({ id: "msg_4", timestamp: now, payload }, [old, fresh, edge])
      const entries = headers["webhook-signature"].split(" ")
      expect(entries.map((e) => e.split(",")[0])).toEqual(["v1", "v1", "v1a"])
      for (const key of [old, fresh, edge]) {
        const verified = yield* Signature.verify(headers, payload, [key], at(now))
        expect(verified.id).toBe("msg_4")
      }
      for (const [index, key] of [old, fresh].entries()) {
        if (key.version !== "v1") throw new Error("expected v1")
        // standardwebhooks checks the entries one by one, so each must stand on its own.
        const alone = { ...headers, "webhook-signature": entries[index]! }
        expect(() => new Webhook(Redacted.value(key.key)).verify(payload, alone)).not.toThrow()
      }
      expect(
        yield* Effect.flip(Signature.verify(headers, payload, [Signature.generateV1()], at(now)))
      ).toMatchObject({ _tag: "InvalidSignature" })
    })
  )

  it("GitHub: our signatures verify with @octokit/webhooks-methods, and its with ours", async () => {
    const secret = "It's a Secret to Everybody"
    const payload = '{"action":"opened","number":1}'
    const ours = Signature.signGithub(payload, Redacted.make(secret))
    expect(await Octokit.verify(secret, payload, ours)).toBe(true)
    expect(await Octokit.verify("another secret", payload, ours)).toBe(false)
    const theirs = await Octokit.sign(secret, payload)
    expect(theirs).toBe(ours)
    await Effect.runPromise(
      Signature.verifyGithub({ "X-Hub-Signature-256": theirs }, payload, [Redacted.make(secret)])
    )
    expect(
      await failureTag(
        Signature.verifyGithub({ "x-hub-signature-256": theirs }, payload + "\n", [Redacted.make(secret)])
      )
    ).toBe("InvalidSignature")
    expect(await failureTag(Signature.verifyGithub({}, payload, [Redacted.make(secret)]))).toBe(
      "MissingHeader"
    )
    expect(
      await failureTag(
        Signature.verifyGithub({ "x-hub-signature-256": "sha1=00" }, payload, [Redacted.make(secret)])
      )
    ).toBe("MalformedHeader")
  })

  it("Stripe: our headers pass constructEvent, and generateTestHeaderString passes ours", async () => {
    const secret = "whsec_test_secret_for_stripe_0123456789"
    const payload = JSON.stringify({
      id: "evt_1",
      object: "event",
      type: "invoice.paid",
      created: 1,
      data: {}
    })
    const now = nowSeconds()
    const ours = Signature.signStripe({ timestamp: now, payload }, Redacted.make(secret))
    expect(Stripe.webhooks.constructEvent(payload, ours, secret).id).toBe("evt_1")
    expect(() => Stripe.webhooks.constructEvent(payload, ours, "whsec_other")).toThrow()
    const theirs = Stripe.webhooks.generateTestHeaderString({ payload, secret, timestamp: now })
    expect(theirs).toBe(ours)
    const verified = await Effect.runPromise(
      Signature.verifyStripe({ "Stripe-Signature": theirs }, payload, [Redacted.make(secret)], at(now))
    )
    expect(verified.timestamp).toBe(now)
    // Stripe's own check accepts a timestamp an hour ahead; ours does not.
    const ahead = Stripe.webhooks.generateTestHeaderString({ payload, secret, timestamp: now + 3600 })
    expect(Stripe.webhooks.constructEvent(payload, ahead, secret).id).toBe("evt_1")
    expect(
      await failureTag(
        Signature.verifyStripe({ "stripe-signature": ahead }, payload, [Redacted.make(secret)], at(now))
      )
    ).toBe("TimestampTooNew")
    expect(
      await failureTag(
        Signature.verifyStripe(
          { "stripe-signature": theirs },
          payload,
          [Redacted.make(secret)],
          at(now + 301)
        )
      )
    ).toBe("TimestampTooOld")
  })
})

describe("Signature: headers", () => {
  const secret = Signature.secretV1(vector.secret)
  const good = {
    "webhook-id": vector.id,
    "webhook-timestamp": String(vector.timestamp),
    "webhook-signature": vector.signature
  }

  it("reads header names case-insensitively, from web Headers too", async () => {
    const upper = {
      "Webhook-Id": vector.id,
      "WEBHOOK-TIMESTAMP": String(vector.timestamp),
      "Webhook-Signature": vector.signature
    }
    await Effect.runPromise(Signature.verify(upper, vector.payload, [secret], at(vector.timestamp)))
    await Effect.runPromise(
      Signature.verify(new Headers(upper), vector.payload, [secret], at(vector.timestamp))
    )
  })

  it("names each malformed or missing header", async () => {
    const check = (headers: Record<string, string>) =>
      failureTag(Signature.verify(headers, vector.payload, [secret], at(vector.timestamp)))
    expect(await check({ ...good, "webhook-id": "" })).toBe("MissingHeader")
    const { "webhook-signature": _, ...noSignature } = good
    expect(await check(noSignature)).toBe("MissingHeader")
    expect(await check({ ...good, "webhook-timestamp": "1614265330.0" })).toBe("MalformedHeader")
    expect(await check({ ...good, "webhook-timestamp": "-1" })).toBe("MalformedHeader")
    expect(await check({ ...good, "webhook-signature": "   " })).toBe("MalformedHeader")
    expect(await check({ ...good, "webhook-signature": "v2,abc" })).toBe("InvalidSignature")
    expect(await check({ ...good, "webhook-signature": Array(17).fill(vector.signature).join(" ") })).toBe(
      "MalformedHeader"
    )
  })

  it("the error body never carries the signature or the key", async () => {
    const error = await Effect.runPromise(
      Effect.flip(Signature.verify(good, vector.payload + " ", [secret], at(vector.timestamp)))
    )
    const text = JSON.stringify(error)
    expect(text).not.toContain("g0hM9SsE")
    expect(text).not.toContain("MfKQ9r8G")
  })

  it("refuses keys that are not what they claim", () => {
    expect(() => Signature.secretV1("whsec_short")).toThrow()
    expect(() => Signature.secretV1("whsec_not base64!")).toThrow()
    expect(() => Signature.secretV1a("whsk_AAAA")).toThrow()
    expect(() => Signature.publicKeyV1a("whpk_AAAA")).toThrow()
    // Logging a key by mistake prints nothing of it.
    expect(JSON.stringify(Signature.secretV1(vector.secret))).not.toContain("MfKQ")
    expect(String(Signature.generateV1a().version === "v1a" && Signature.generateV1a())).not.toContain(
      "whsk_"
    )
  })
})

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

const v1Key = fc
  .uint8Array({ minLength: 24, maxLength: 64 })
  .map((bytes) => Signature.secretV1(`whsec_${Buffer.from(bytes).toString("base64")}`))
const v1aKey = fc
  .uint8Array({ minLength: 32, maxLength: 32 })
  .map((seed) => Signature.secretV1a(`whsk_${Buffer.from(seed).toString("base64")}`))
const anyKey = fc.oneof(v1Key, v1aKey)
const headerText = fc.string({
  unit: fc.constantFrom(..."abcdefghijklmnopqrstuvwxyz0123456789_-"),
  minLength: 1,
  maxLength: 40
})
const unixSeconds = fc.integer({ min: 1_000_000_000, max: 4_000_000_000 })

/** A different value for one position of a byte array. */
const changeByte = (bytes: Uint8Array, index: number, delta: number): Uint8Array => {
  const copy = Uint8Array.from(bytes)
  copy[index] = (copy[index]! + delta) % 256
  return copy
}

const changeChar = (text: string, index: number, delta: number): string =>
  Buffer.from(changeByte(Buffer.from(text, "latin1"), index, delta)).toString("latin1")

describe("Signature: properties", () => {
  it("the verifier rejects any single-byte change", () =>
    Property.effect(
      [
        anyKey,
        headerText,
        unixSeconds,
        fc.string({ unit: "binary", maxLength: 200 }),
        fc.constantFrom("payload", "id", "timestamp", "signature"),
        fc.nat(),
        fc.integer({ min: 1, max: 255 })
      ],
      ([key, id, timestamp, payload, field, position, delta]) =>
        Effect.gen(function* () {
          const keys = [key]
          yield* TestClock.setTime(timestamp * 1000)
          const headers = Signature.sign({ id, timestamp, payload }, keys)
          const body = Buffer.from(payload, "utf8")
          // The untouched message verifies: the change below is what makes it fail.
          yield* Signature.verify(headers, body, keys)
          let changedBody: Uint8Array = body
          let changedHeaders: Record<string, string> = { ...headers }
          if (field === "payload") {
            if (body.length === 0) changedBody = Uint8Array.of(delta)
            else changedBody = changeByte(body, position % body.length, delta)
          } else {
            const name = `webhook-${field}` as const
            const value = headers[name]
            // Header values are bytes on the wire; keep the change in the printable range so it is
            // still a legal header (a control byte would be refused by the HTTP layer first).
            const printable = ((value.charCodeAt(position % value.length) - 32 + delta) % 95) + 32
            const changed =
              printable === value.charCodeAt(position % value.length)
                ? changeChar(value, position % value.length, 1)
                : value.slice(0, position % value.length) +
                  String.fromCharCode(printable) +
                  value.slice((position % value.length) + 1)
            changedHeaders = { ...headers, [name]: changed }
          }
          const result = yield* Effect.result(Signature.verify(changedHeaders, changedBody, keys))
          expect(result._tag, `${field} changed`).toBe("Failure")
        })
    ))

  it("any timestamp outside tolerance in either direction is rejected", () =>
    Property.effect(
      [
        v1Key,
        unixSeconds,
        fc.integer({ min: 1, max: 3600 }),
        fc.integer({ min: 1, max: 100_000 }),
        fc.boolean(),
        fc.integer({ min: 0, max: 3600 })
      ],
      ([key, now, tolerance, beyond, future, within]) =>
        Effect.gen(function* () {
          yield* TestClock.setTime(now * 1000)
          const options = { tolerance: `${tolerance} seconds` as const }
          const outside = future ? now + tolerance + beyond : now - tolerance - beyond
          const late = Signature.sign({ id: "msg", timestamp: outside, payload: "{}" }, [key])
          const error = yield* Effect.flip(Signature.verify(late, "{}", [key], options))
          expect(error._tag).toBe(future ? "TimestampTooNew" : "TimestampTooOld")
          // Within the tolerance (the edge included) it passes, either way round.
          const offset = Math.min(within, tolerance) * (future ? 1 : -1)
          const fresh = Signature.sign({ id: "msg", timestamp: now + offset, payload: "{}" }, [key])
          yield* Signature.verify(fresh, "{}", [key], options)
        })
    ))

  it("every attempt verifies with any active key", () =>
    Property.effect(
      [
        fc.array(anyKey, { minLength: 1, maxLength: 4 }),
        headerText,
        fc.array(fc.integer({ min: 0, max: 100_000 }), { minLength: 1, maxLength: 5 }),
        fc.json({ maxDepth: 2 })
      ],
      ([keys, id, delays, payload]) =>
        Effect.gen(function* () {
          // Attempts of one message: the same id each time, a fresh timestamp, every key signing. Real
          // time is used, because the independent checker reads Date.now.
          const start = nowSeconds()
          for (const delay of delays) {
            yield* TestClock.setTime((start + delay) * 1000)
            const headers = Signature.sign({ id, timestamp: start + delay, payload }, keys)
            expect(headers["webhook-id"]).toBe(id)
            expect(headers["webhook-signature"].split(" ")).toHaveLength(keys.length)
            for (const key of keys) {
              const verified = yield* Signature.verify(headers, payload, [key])
              expect(verified).toEqual({ id, timestamp: start + delay })
              const mixed = yield* Signature.verify(headers, payload, [Signature.generateV1(), key])
              expect(mixed.id).toBe(id)
            }
            const content = `${id}.${start + delay}.${payload}`
            for (const [index, key] of keys.entries()) {
              const entry = headers["webhook-signature"].split(" ")[index]!
              if (key.version === "v1a") expect(ed25519Verifies(key.publicKey, content, entry)).toBe(true)
              else if (delay === 0)
                expect(() =>
                  new Webhook(Redacted.value(key.key)).verify(payload, {
                    ...headers,
                    "webhook-signature": entry
                  })
                ).not.toThrow()
            }
          }
        }),
      { numRuns: 50 }
    ))
})
