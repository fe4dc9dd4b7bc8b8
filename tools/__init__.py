"""Build tooling of the book: execute chapters, build the HTML, the student edition, reports."""
