; formats.scm: grayscale and high bit depth images.  Gray goes to the model
; as R = G = B and comes back as luminance; 16-bit and float images are
; exchanged as float and agree with the 8-bit result to a level.

; The 8-bit reference.
(define ref (gimp-image-new 48 32 RGB))
(define r (plug-in-ddpm-generate #:run-mode RUN-NONINTERACTIVE #:image ref
                                 #:model test-model #:steps 2 #:seed 21))
(export-drawable r "u8.png")
(gimp-image-delete ref)

(define (generate-at precision name)
  (let* ((img (gimp-image-new-with-precision 48 32 RGB precision))
         (layer (plug-in-ddpm-generate #:run-mode RUN-NONINTERACTIVE #:image img
                                       #:model test-model #:steps 2 #:seed 21)))
    (check (string-append name ": layer at the image's precision")
           (= (gimp-image-get-precision img) precision))
    (export-drawable layer (string-append name ".png"))
    (gimp-image-delete img)))
(generate-at PRECISION-U16-NON-LINEAR "u16")
(generate-at PRECISION-FLOAT-NON-LINEAR "float")
(generate-at PRECISION-FLOAT-LINEAR "float-linear")

; Grayscale: generate gives a gray layer; refine works inside a selection.
(define g (gimp-image-new 48 32 GRAY))
(define gl (plug-in-ddpm-generate #:run-mode RUN-NONINTERACTIVE #:image g
                                  #:model test-model #:steps 2 #:seed 22))
(check "gray image: a gray layer with alpha" (= (gimp-drawable-type gl) GRAYA-IMAGE))
(export-drawable gl "gray-gen.png")
(gimp-image-select-rectangle g CHANNEL-OP-REPLACE 8 8 16 16)
(export-drawable gl "gray-before.png")
(plug-in-ddpm-refine #:run-mode RUN-NONINTERACTIVE #:image g #:drawables (vector gl)
                     #:model test-model #:timestep refine-t #:steps 3 #:seed 23)
(export-drawable gl "gray-after.png")
(gimp-image-delete g)

; A 16-bit RGB layer without alpha, refined inside a selection.
(define h (gimp-image-new-with-precision 48 32 RGB PRECISION-U16-NON-LINEAR))
(define hl (add-filled-layer h "base" 90 140 200))
(gimp-image-select-rectangle h CHANNEL-OP-REPLACE 4 4 20 12)
(export-drawable hl "u16-before.png")
(plug-in-ddpm-refine #:run-mode RUN-NONINTERACTIVE #:image h #:drawables (vector hl)
                     #:model test-model #:timestep refine-t #:steps 3 #:seed 24)
(check "16-bit layer keeps its type" (= (gimp-drawable-type hl) RGB-IMAGE))
(export-drawable hl "u16-after.png")
(gimp-image-delete h)
