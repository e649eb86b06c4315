; errors.scm: bad calls fail with a clear message and leave the image as it
; was.  run-test.sh calls one (bad-...) per gimp-console run and expects a
; failure exit and the message; (all-bad-calls-leave-image-unchanged) runs
; them all, catching the errors, and checks the image afterwards.

(define img (gimp-image-new 32 32 RGB))
(define layer (add-filled-layer img "base" 120 60 30))
(gimp-image-select-rectangle img CHANNEL-OP-REPLACE 4 4 16 16)

(define (bad-unknown-model)
  (plug-in-ddpm-generate #:run-mode RUN-NONINTERACTIVE #:image img
                         #:model "no-such-model" #:steps 2 #:seed 1))
(define (bad-steps-zero)
  (plug-in-ddpm-generate #:run-mode RUN-NONINTERACTIVE #:image img
                         #:model test-model #:steps 0 #:seed 1))
(define (bad-steps-too-many)
  (plug-in-ddpm-generate #:run-mode RUN-NONINTERACTIVE #:image img
                         #:model test-model #:steps (+ test-model-T 1) #:seed 1))
(define (bad-refine-steps-too-many)
  (plug-in-ddpm-refine #:run-mode RUN-NONINTERACTIVE #:image img #:drawables (vector layer)
                       #:model test-model #:timestep 3 #:steps (+ test-model-T 1) #:seed 1))
(define (bad-timestep)
  (plug-in-ddpm-refine #:run-mode RUN-NONINTERACTIVE #:image img #:drawables (vector layer)
                       #:model test-model #:timestep (+ test-model-T 1) #:steps 2 #:seed 1))
; A 32 x 32 layer is larger than the test model's 16: generated period-first.
(define (bad-period-steps-too-many)
  (plug-in-ddpm-generate #:run-mode RUN-NONINTERACTIVE #:image img
                         #:model test-model #:steps 2 #:seed 1 #:period-steps (+ test-model-T 1)))
(define (bad-period-t-too-large)
  (plug-in-ddpm-generate #:run-mode RUN-NONINTERACTIVE #:image img
                         #:model test-model #:steps 2 #:seed 1 #:period-t (+ test-model-T 1)))
(define (bad-corrupt-model)
  (plug-in-ddpm-refine #:run-mode RUN-NONINTERACTIVE #:image img #:drawables (vector layer)
                       #:model "corrupt" #:timestep 3 #:steps 2 #:seed 1))
(define (bad-not-a-model-folder)
  (plug-in-ddpm-generate #:run-mode RUN-NONINTERACTIVE #:image img
                         #:model out-dir #:steps 2 #:seed 1))
(define (bad-no-drawable)
  (plug-in-ddpm-refine #:run-mode RUN-NONINTERACTIVE #:image img #:drawables (vector)
                       #:model test-model #:timestep 3 #:steps 2 #:seed 1))

(define (fails? thunk) (catch #t (begin (thunk) #f)))

(define (all-bad-calls-leave-image-unchanged)
  (export-drawable layer "unchanged-before.png")
  (check "unknown model fails" (fails? bad-unknown-model))
  (check "steps 0 fails" (fails? bad-steps-zero))
  (check "steps > T fails" (fails? bad-steps-too-many))
  (check "refine steps > T fails" (fails? bad-refine-steps-too-many))
  (check "timestep > T fails" (fails? bad-timestep))
  (check "period-steps > T fails" (fails? bad-period-steps-too-many))
  (check "period-t > T fails" (fails? bad-period-t-too-large))
  (check "corrupt weights fail" (fails? bad-corrupt-model))
  (check "a folder that is no model fails" (fails? bad-not-a-model-folder))
  (check "refine without a drawable fails" (fails? bad-no-drawable))
  (check "layer count unchanged" (= (layer-count img) 1))
  (export-drawable layer "unchanged-after.png"))
