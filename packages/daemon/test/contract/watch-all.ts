/**
 * Preloaded (`node --import`) into the CLI processes the CLI tests run: every admin API answer the CLI gets is checked
 * against openapi.json (see recorder.ts); a disagreement kills the CLI with the message on stderr.
 */
import { watchAll } from "./recorder.js";

watchAll();
