"""Inference on real photos (DESIGN §4): detect -> align -> restore -> colour -> paste.

Modules: `detect` (faces + dlib landmarks), `align` (5-point similarity to the FFHQ template,
exact FFHQ 68-point rule), `paste` (colour match, feathered inverse-warp paste-back), `restore`
(the whole-photo pipeline against any restorer callable). Import the module you need; this
package imports nothing heavy itself.
"""
