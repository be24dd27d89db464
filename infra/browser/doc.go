// Package browser holds the end-to-end test of stipend's two pages (the
// teacher's dashboard and the student's page, shared/pages) in a real
// headless Chromium: Debian's /usr/bin/chromium driven by npm
// playwright-core (infra/package-lock.json) through pages.mjs, against the
// local stack of infra/devstack.
package browser
