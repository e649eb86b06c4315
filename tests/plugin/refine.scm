; refine.scm: plug-in-ddpm-refine changes the selected layer only inside the
; selection, keeps alpha, and is one layer operation (no new layers).

(define img (gimp-image-new 64 48 RGB))
(define base (plug-in-ddpm-generate #:run-mode RUN-NONINTERACTIVE #:image img
                                    #:model test-model #:steps 2 #:seed 11))

; A rectangular selection: changed inside, identical outside.
(export-drawable base "rect-before.png")
(gimp-image-select-rectangle img CHANNEL-OP-REPLACE 16 8 24 24)
(plug-in-ddpm-refine #:run-mode RUN-NONINTERACTIVE #:image img #:drawables (vector base)
                     #:model test-model #:timestep refine-t #:steps 3 #:seed 5)
(check "no new layer" (= (layer-count img) 1))
(export-drawable base "rect-after.png")

; A feathered ellipse: nothing changes beyond its bounds plus the feather.
(gimp-context-set-feather #t)
(gimp-context-set-feather-radius 4 4)
(gimp-image-select-ellipse img CHANNEL-OP-REPLACE 8 8 32 24)
(gimp-context-set-feather #f)
(export-drawable base "ellipse-before.png")
(plug-in-ddpm-refine #:run-mode RUN-NONINTERACTIVE #:image img #:drawables (vector base)
                     #:model test-model #:timestep refine-t #:steps 3 #:seed 6
                     #:variance "beta")
(export-drawable base "ellipse-after.png")

; No selection: the whole layer changes; pixels keep their alpha (a
; feathered clear leaves transparent, half- and fully opaque ones).
(gimp-context-set-feather #t)
(gimp-context-set-feather-radius 8 8)
(gimp-image-select-rectangle img CHANNEL-OP-REPLACE 0 0 24 48)
(gimp-context-set-feather #f)
(gimp-drawable-edit-clear base)
(gimp-selection-none img)
(export-drawable base "alpha-before.png")
(plug-in-ddpm-refine #:run-mode RUN-NONINTERACTIVE #:image img #:drawables (vector base)
                     #:model test-model #:timestep refine-t #:steps 3 #:seed 7 #:tileable #t)
(export-drawable base "alpha-after.png")

; A layer with offsets, partly outside the canvas, and a selection.
(define moved (plug-in-ddpm-generate #:run-mode RUN-NONINTERACTIVE #:image img
                                     #:model test-model #:width 32 #:height 32
                                     #:steps 2 #:seed 12))
(gimp-layer-set-offsets moved 40 30)
(gimp-image-select-rectangle img CHANNEL-OP-REPLACE 44 34 12 10)
(export-drawable moved "offset-before.png")
(plug-in-ddpm-refine #:run-mode RUN-NONINTERACTIVE #:image img #:drawables (vector moved)
                     #:model test-model #:timestep refine-t #:steps 3 #:seed 9)
(export-drawable moved "offset-after.png")
(gimp-image-delete img)
