/**
 * Builds the package in the working directory for publishing: a clean `dist` of ESM JavaScript,
 * declarations and their maps from its `tsconfig.build.json`. Run by each package's `build` script.
 */
import { execFileSync } from "node:child_process"
import { readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"

const tsc = join(import.meta.dirname, "..", "node_modules", ".bin", "tsc")

// `tsc -b` trusts its build info over the files on disk: a file deleted from `dist` is not emitted
// again. Starting from an empty `dist` (which holds the build info) makes every build complete.
rmSync("dist", { recursive: true, force: true })
execFileSync(tsc, ["-b", "tsconfig.build.json"], { stdio: "inherit" })

// tsc rewrites `./X.ts` to `./X.js` in the JavaScript but keeps `./X.ts` in declarations, where
// only TypeScript reads it as `./X.d.ts`; other tools look for a file that is not published. The
// rewrite keeps each specifier's length, so the declaration maps stay exact.
const relativeTs = /((?:from|import)\s*\(?\s*["'])(\.{1,2}\/[^"']*)\.ts(["'])/g

const declarations = (dir: string): ReadonlyArray<string> =>
  readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory()
      ? declarations(join(dir, entry.name))
      : entry.name.endsWith(".d.ts")
        ? [join(dir, entry.name)]
        : []
  )

for (const file of declarations("dist")) {
  const text = readFileSync(file, "utf8")
  const rewritten = text.replace(relativeTs, "$1$2.js$3")
  if (rewritten !== text) writeFileSync(file, rewritten)
}
