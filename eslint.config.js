import js from "@eslint/js";
import globals from "globals";

const rules = { "no-unused-vars": "error", eqeqeq: "error", "prefer-const": "error" };

export default [
  js.configs.recommended,
  {
    files: ["js/src/**/*.js"],
    languageOptions: { ecmaVersion: 2022, sourceType: "module", globals: globals.browser },
    rules,
  },
  {
    files: ["js/test/**/*.js", "js/*.mjs", "eslint.config.js"],
    languageOptions: { ecmaVersion: 2022, sourceType: "module", globals: globals.node },
    rules,
  },
];
