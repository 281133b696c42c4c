/**
 * The REST example's pages in a real browser (Debian chromium through playwright-core): log in
 * through the CSRF-protected form, add a note, see it, log out — with the app's real security
 * headers, so a header that breaks forms in browsers (a CSP, a Referrer-Policy) shows here.
 */
import { NodeHttpServer } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as HttpServer from "effect/http/HttpServer"
import { execFileSync } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { createServer } from "node:http"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { chromium } from "playwright-core"
import { App } from "@strata/core"
import { app, layerMemory } from "../src/app.ts"

const chromiumPath = (() => {
  try {
    return execFileSync("which", ["chromium"], { encoding: "utf8" }).trim() || undefined
  } catch {
    return undefined
  }
})()

if (chromiumPath === undefined) {
  process.stderr.write("chromium is not installed: the REST example's browser test is skipped\n")
}

const server = App.serve(app).pipe(
  Layer.provide(layerMemory),
  Layer.provideMerge(NodeHttpServer.layer(createServer, { port: 0, host: "127.0.0.1" }))
)

describe.skipIf(chromiumPath === undefined)("rest-api example in a browser", () => {
  it.live(
    "logs in through the form, adds a note and logs out",
    () =>
      Effect.gen(function* () {
        const address = (yield* HttpServer.HttpServer).address
        const url = `http://127.0.0.1:${"port" in address ? address.port : 0}`
        const profile = mkdtempSync(join(tmpdir(), "strata-chromium-"))
        const result = yield* Effect.promise(async () => {
          // A persistent context is how playwright takes a fresh --user-data-dir.
          const browser = await chromium.launchPersistentContext(profile, {
            executablePath: chromiumPath!,
            headless: true,
            args: [
              "--headless",
              "--no-sandbox",
              "--disable-gpu",
              "--disable-quic",
              "--no-first-run",
              "--disable-background-networking",
              "--disable-component-update",
              "--disable-sync"
            ],
            timeout: 20_000
          })
          try {
            const page = await browser.newPage()
            page.setDefaultTimeout(10_000)
            await page.goto(`${url}/`)
            await page.fill('input[name="username"]', "bob")
            await page.fill('input[name="password"]', "bob-password")
            await Promise.all([page.waitForURL(`${url}/`), page.click("text=Log in")])
            const heading = await page.textContent("h1")
            await page.fill('input[name="title"]', "from chromium")
            await page.fill('input[name="body"]', "typed in a real browser")
            await Promise.all([page.waitForURL(`${url}/`), page.click("text=Add")])
            const notes = await page.textContent("#notes")
            await Promise.all([page.waitForURL(`${url}/`), page.click("text=Log out")])
            const after = await page.isVisible('input[name="password"]')
            return { heading, notes, after }
          } finally {
            await browser.close()
            rmSync(profile, { recursive: true, force: true })
          }
        })
        expect(result.heading).toBe("Notes of Bob")
        expect(result.notes).toContain("from chromium")
        expect(result.after).toBe(true)
      }).pipe(Effect.provide(server)),
    60_000
  )
})
