package com.example.yolov7

import android.graphics.Bitmap
import android.graphics.Canvas
import android.graphics.Color
import android.graphics.Paint
import android.graphics.RectF
import kotlin.math.min

/**
 * A frame letterboxed to the model's square input, as the validation pipeline and `predict()` do
 * it: the longer side scaled to `size`, the frame centred, the rest grey 114.
 *
 * Both detectors need it. The LiteRT interpreter takes whatever it is given; MediaPipe's
 * ObjectDetector stretches a frame to the model's input instead of letterboxing it, so it is
 * given the letterboxed bitmap (already at the input size: MediaPipe then leaves it as it is).
 */
class Letterbox(frame: Bitmap, val size: Int) {
    private val frameWidth = frame.width.toFloat()
    private val frameHeight = frame.height.toFloat()
    val scale = min(size / frameWidth, size / frameHeight)
    private val width = (frameWidth * scale).toInt().coerceAtLeast(1)
    private val height = (frameHeight * scale).toInt().coerceAtLeast(1)
    val padX = (size - width) / 2f
    val padY = (size - height) / 2f

    /** The `size` x `size` ARGB bitmap the model sees. */
    val bitmap: Bitmap = Bitmap.createBitmap(size, size, Bitmap.Config.ARGB_8888).also {
        Canvas(it).apply {
            drawColor(Color.rgb(114, 114, 114))
            drawBitmap(
                Bitmap.createScaledBitmap(frame, width, height, true),
                padX, padY, Paint(Paint.FILTER_BITMAP_FLAG),
            )
        }
    }

    /** A box in pixels of the letterboxed input -> the frame's pixels, clipped to the frame. */
    fun toFrame(left: Float, top: Float, right: Float, bottom: Float) = RectF(
        ((left - padX) / scale).coerceIn(0f, frameWidth),
        ((top - padY) / scale).coerceIn(0f, frameHeight),
        ((right - padX) / scale).coerceIn(0f, frameWidth),
        ((bottom - padY) / scale).coerceIn(0f, frameHeight),
    )
}
