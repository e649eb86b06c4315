; generate.scm: plug-in-ddpm-generate puts a texture of the asked size in a
; new layer above the active one, named "<model> #<seed>", reproducibly.

(define img (gimp-image-new 64 48 RGB))
(define bottom (add-filled-layer img "bottom" 200 100 50))
(define top (add-filled-layer img "top" 20 40 60))
(gimp-image-set-selected-layers img (vector bottom))

(define a (plug-in-ddpm-generate #:run-mode RUN-NONINTERACTIVE #:image img
                                 #:drawables (vector bottom)
                                 #:model test-model #:width 40 #:height 24
                                 #:steps 3 #:variance "posterior" #:seed 1234))
(check "one new layer" (= (layer-count img) 3))
(check "asked width" (= (gimp-drawable-get-width a) 40))
(check "asked height" (= (gimp-drawable-get-height a) 24))
(check "named after model and seed"
       (string=? (gimp-item-get-name a) (string-append test-model-name " #1234")))
(check "inserted above the active layer"
       (and (= (gimp-image-get-item-position img top) 0)
            (= (gimp-image-get-item-position img a) 1)
            (= (gimp-image-get-item-position img bottom) 2)))
(check "RGBA layer" (= (gimp-drawable-type a) RGBA-IMAGE))
(export-drawable a "gen-a.png")

; The same settings again give the same pixels; a model given by its name in
; the profile's ddpm-models folder is the same model.
(define b (plug-in-ddpm-generate #:run-mode RUN-NONINTERACTIVE #:image img
                                 #:model test-model-name #:width 40 #:height 24
                                 #:steps 3 #:variance "posterior" #:seed 1234))
(export-drawable b "gen-b.png")

; Another seed, the other variance, tileable: still a texture, but another.
(define c (plug-in-ddpm-generate #:run-mode RUN-NONINTERACTIVE #:image img
                                 #:model test-model #:width 40 #:height 24
                                 #:steps 3 #:variance "beta" #:seed 77 #:tileable #t))
(check "named after the other seed"
       (string=? (gimp-item-get-name c) (string-append test-model-name " #77")))
(export-drawable c "gen-c.png")

; Width and height 0: the image's size.  Odd sizes are the core's business.
(define d (plug-in-ddpm-generate #:run-mode RUN-NONINTERACTIVE #:image img
                                 #:model test-model #:width 0 #:height 0
                                 #:steps 2 #:seed 5))
(check "0 x 0 is the image size"
       (and (= (gimp-drawable-get-width d) 64) (= (gimp-drawable-get-height d) 48)))
(export-drawable d "gen-d.png")
(define e (plug-in-ddpm-generate #:run-mode RUN-NONINTERACTIVE #:image img
                                 #:model test-model #:width 37 #:height 19
                                 #:steps 2 #:seed 6))
(check "odd size" (and (= (gimp-drawable-get-width e) 37) (= (gimp-drawable-get-height e) 19)))
(export-drawable e "gen-e.png")

; An image without layers works too (no drawables passed).
(define empty (gimp-image-new 32 32 RGB))
(define f (plug-in-ddpm-generate #:run-mode RUN-NONINTERACTIVE #:image empty
                                 #:model test-model #:steps 2 #:seed 8))
(check "generate into an image without layers" (= (layer-count empty) 1))
(gimp-image-delete empty)
(gimp-image-delete img)
