; shipped.scm: an empty `model` is the shipped model.  run-test.sh installs
; the test model as <plug-in folder>/models/ddpm-texture, the place a user
; copies it to, which comes before the installed and source-tree copies.

(define img (gimp-image-new 40 24 RGB))
(define a (plug-in-ddpm-generate #:run-mode RUN-NONINTERACTIVE #:image img
                                 #:model "" #:steps 2 #:seed 5))
(check "the shipped model's name" (string=? (gimp-item-get-name a) "ddpm-texture #5"))
(export-drawable a "shipped.png")
(define b (plug-in-ddpm-generate #:run-mode RUN-NONINTERACTIVE #:image img
                                 #:model test-model #:steps 2 #:seed 5))
(export-drawable b "explicit.png")
(define c (plug-in-ddpm-generate #:run-mode RUN-NONINTERACTIVE #:image img
                                 #:model "ddpm-texture" #:steps 2 #:seed 5))
(export-drawable c "by-name.png")
(gimp-image-delete img)
