/* pixels.c: drawable pixels <-> the core's image planes.
 *
 * The core works on 3 x H x W float planes in model space [-1, 1].  GEGL
 * converts any drawable (RGB or gray, 8/16/32-bit, with or without alpha) to
 * interleaved R'G'B'A in the drawable's own color space; gray becomes
 * R' = G' = B' = Y' on the way in and luminance on the way out.
 *
 * 8-bit images are exchanged as u8 and mapped with the core's
 * ddpm_from_u8 / ddpm_to_u8, exactly as the CLI maps PNG samples, so the
 * plug-in and `ddpm generate` give the same pixels.  Deeper images are
 * exchanged as float, v = 2 p - 1, so nothing is quantized on the way.
 */

#include <libgimp/gimp.h>

#include "ddpm-plugin.h"

static gboolean
is_8bit (GimpPrecision precision)
{
  return precision == GIMP_PRECISION_U8_LINEAR ||
         precision == GIMP_PRECISION_U8_NON_LINEAR ||
         precision == GIMP_PRECISION_U8_PERCEPTUAL;
}

gboolean
ddpm_pixels_init (DdpmPixels   *px,
                  GimpDrawable *drawable,
                  gint          width,
                  gint          height)
{
  GimpImage *image = gimp_item_get_image (GIMP_ITEM (drawable));
  gsize      sample;

  px->u8     = is_8bit (gimp_image_get_precision (image));
  px->format = babl_format_with_space (px->u8 ? "R'G'B'A u8" : "R'G'B'A float",
                                       gimp_drawable_get_format (drawable));
  px->width  = width;
  px->height = height;
  sample     = px->u8 ? 1 : sizeof (gfloat);
  px->rgba   = g_try_malloc ((gsize) width * (gsize) height * 4 * sample);
  return px->rgba != NULL;
}

void
ddpm_pixels_clear (DdpmPixels *px)
{
  g_clear_pointer (&px->rgba, g_free);
}

void
ddpm_pixels_read (DdpmPixels *px,
                  GeglBuffer *buffer,
                  gint        x,
                  gint        y)
{
  gegl_buffer_get (buffer, GEGL_RECTANGLE (x, y, px->width, px->height), 1.0,
                   px->format, px->rgba, GEGL_AUTO_ROWSTRIDE, GEGL_ABYSS_NONE);
}

void
ddpm_pixels_write (const DdpmPixels *px,
                   GeglBuffer       *buffer,
                   gint              x,
                   gint              y)
{
  gegl_buffer_set (buffer, GEGL_RECTANGLE (x, y, px->width, px->height), 0,
                   px->format, px->rgba, GEGL_AUTO_ROWSTRIDE);
}

void
ddpm_pixels_to_planes (const DdpmPixels *px,
                       gfloat           *planes)
{
  gsize n = (gsize) px->width * (gsize) px->height;

  for (gsize i = 0; i < n; i++)
    for (gint c = 0; c < 3; c++)
      {
        if (px->u8)
          planes[c * n + i] = ddpm_from_u8 (((const guint8 *) px->rgba)[4 * i + c]);
        else  /* v = 2 p - 1; float images may hold values outside [0, 1] */
          planes[c * n + i] = 2.0f * CLAMP (((const gfloat *) px->rgba)[4 * i + c],
                                            0.0f, 1.0f) - 1.0f;
      }
}

void
ddpm_pixels_from_planes (DdpmPixels   *px,
                         const gfloat *planes,
                         gboolean      opaque)
{
  gsize n = (gsize) px->width * (gsize) px->height;

  for (gsize i = 0; i < n; i++)
    {
      for (gint c = 0; c < 3; c++)
        {
          if (px->u8)
            ((guint8 *) px->rgba)[4 * i + c] = ddpm_to_u8 (planes[c * n + i]);
          else  /* p = (v + 1) / 2, clamped like the 8-bit mapping */
            ((gfloat *) px->rgba)[4 * i + c] = CLAMP ((planes[c * n + i] + 1.0f) * 0.5f,
                                                      0.0f, 1.0f);
        }
      if (opaque && px->u8)
        ((guint8 *) px->rgba)[4 * i + 3] = 255;
      else if (opaque)
        ((gfloat *) px->rgba)[4 * i + 3] = 1.0f;
    }
}

gfloat *
ddpm_selection_mask (GimpImage *image,
                     gint       x,
                     gint       y,
                     gint       width,
                     gint       height)
{
  GimpSelection *selection = gimp_image_get_selection (image);
  GeglBuffer    *buffer;
  gfloat        *mask;

  mask = g_try_new (gfloat, (gsize) width * (gsize) height);
  if (! mask)
    return NULL;
  /* The selection is a linear "Y" channel: its values are the mask weights.
   * Outside the canvas the abyss reads as 0 (not selected). */
  buffer = gimp_drawable_get_buffer (GIMP_DRAWABLE (selection));
  gegl_buffer_get (buffer, GEGL_RECTANGLE (x, y, width, height), 1.0,
                   babl_format ("Y float"), mask, GEGL_AUTO_ROWSTRIDE, GEGL_ABYSS_NONE);
  g_object_unref (buffer);
  return mask;
}
