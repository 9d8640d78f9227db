"""The text reader: finds text in an image (OCR), then personal data in that text.

`types` holds the values that cross module and process boundaries (lines read, findings,
the per-image reading); `recognizers` turns lines into findings; `ocr` runs the engine with
its gate and budget; `features` and `fusion` turn a reading into the served personal_info
score. Training and serving share all of it, so both compute the same features."""
