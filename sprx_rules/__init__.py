"""Rules shared by the laptop (sprx_tui) and the server (sync): one copy, imported by both.

- ``nhs``: NHS number normalise, check digit (Modulus 11), is_valid, format.
- ``validate``: ValidationError and the field validators (dates, postcode, phone, email, text, forms).
- ``gate``: the inbound text gate every value from elsewhere passes, on both sides.
- ``outcomes``: the outcome instruments (ONS4, UCLA3, SWEMWBS, health use), scoring and improvement.
- ``report``: the caseload and outcome Report shape, its pure figures and its text.
- ``hsds``: the Open Referral HSDS 1.1 datapackage parser.

Pure Python and the standard library only: no UI (textual, rich), no database (sqlalchemy,
sqlmodel), no HTTP (httpx, fastapi, starlette), and nothing from sprx_tui or sync. Whatever reads a
database or talks to a terminal stays on its own side and calls in here.
"""
