"""The gallery's icon, at ``/favicon.ico`` where every browser asks for it
(unanswered, the API's 403 showed as two errors in the browser's console).

SVG is text, so it passes API Gateway without binary media types; browsers
take an icon by its content, whatever the path's suffix says.
"""

from __future__ import annotations

CONTENT_TYPE = "image/svg+xml"
# A picture frame: a mountain and a sun, in the gallery's colours.
SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">'
    '<rect x="1" y="4" width="30" height="24" rx="3" fill="#1f4b6e"/>'
    '<circle cx="23" cy="11" r="3.5" fill="#f5c542"/>'
    '<path d="M3 26l9-11 6 7 4-4 7 8z" fill="#9fd3c7"/>'
    "</svg>"
)
HEADERS = {"Content-Type": CONTENT_TYPE, "Cache-Control": "public, max-age=86400"}
