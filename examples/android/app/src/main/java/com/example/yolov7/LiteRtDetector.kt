package com.example.yolov7

import android.content.Context
import android.graphics.Bitmap
import org.tensorflow.lite.DataType
import org.tensorflow.lite.Interpreter
import java.io.FileInputStream
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.channels.FileChannel
import kotlin.math.max
import kotlin.math.min

/**
 * YOLOv7 with the LiteRT Interpreter and the raw layout (export with nms="none").
 *
 * Model input: `(1, S, S, 3)` RGB, uint8 for int8 models (raw bytes, scale 1 / zero point 0),
 * float32 pixel values 0..255 for fp32 / fp16 models. Outputs: `boxes (1, N, 4)` xyxy normalised
 * to [0, 1] of the letterboxed input, `scores (1, N, C)` (objectness x class probability).
 * The app letterboxes the frame (`Letterbox`: pad 114, centred, as the validation pipeline) and
 * runs class-aware NMS.
 */
class LiteRtDetector(
    context: Context,
    modelAsset: String = "yolov7_tiny_int8.tflite",
    private val labels: List<String>,
    private val scoreThreshold: Float = 0.25f,
    private val iouThreshold: Float = 0.45f,
    private val maxDetections: Int = 100,
    threads: Int = 2,
) : AutoCloseable {
    private val interpreter: Interpreter
    private val size: Int
    private val uint8Input: Boolean
    private val numCandidates: Int
    private val numClasses: Int

    init {
        val file = context.assets.openFd(modelAsset)
        val model = FileInputStream(file.fileDescriptor).channel
            .map(FileChannel.MapMode.READ_ONLY, file.startOffset, file.declaredLength)
        interpreter = Interpreter(model, Interpreter.Options().setNumThreads(threads))
        val input = interpreter.getInputTensor(0)
        size = input.shape()[1]
        uint8Input = input.dataType() == DataType.UINT8
        numCandidates = interpreter.getOutputTensor(0).shape()[1] // outputs: boxes, scores
        numClasses = interpreter.getOutputTensor(1).shape()[2]
        require(labels.size == numClasses) { "${labels.size} labels for a $numClasses-class model" }
    }

    fun detect(bitmap: Bitmap): List<Detection> {
        val letterbox = Letterbox(bitmap, size)
        val input = pixels(letterbox.bitmap)

        val boxes = Array(1) { Array(numCandidates) { FloatArray(4) } }
        val scores = Array(1) { Array(numCandidates) { FloatArray(numClasses) } }
        interpreter.runForMultipleInputsOutputs(arrayOf(input), mapOf(0 to boxes, 1 to scores))

        // Best class per candidate, then class-aware greedy NMS (as predict()): a box is dropped
        // when a kept box of its class overlaps it by more than the IoU threshold.
        val candidates = (0 until numCandidates).mapNotNull { i ->
            var best = 0
            for (c in 1 until numClasses) if (scores[0][i][c] > scores[0][i][best]) best = c
            val score = scores[0][i][best]
            if (score > scoreThreshold) Triple(i, best, score) else null
        }.sortedByDescending { it.third }
        val kept = ArrayList<Triple<Int, Int, Float>>()
        for (candidate in candidates) {
            if (kept.size == maxDetections) break
            val overlaps = kept.any {
                it.second == candidate.second && iou(boxes[0][it.first], boxes[0][candidate.first]) > iouThreshold
            }
            if (!overlaps) kept.add(candidate)
        }
        // Normalised letterboxed xyxy -> bitmap pixels: x = (x * S - pad) / scale, clipped.
        return kept.map { (i, c, score) ->
            val b = boxes[0][i]
            Detection(
                box = letterbox.toFrame(b[0] * size, b[1] * size, b[2] * size, b[3] * size),
                label = labels[c],
                score = score,
            )
        }
    }

    /** The model's input: RGB bytes (int8 models) or float pixel values 0..255. */
    private fun pixels(image: Bitmap): ByteBuffer {
        val pixels = IntArray(size * size)
        image.getPixels(pixels, 0, size, 0, 0, size, size)
        val bytesPerValue = if (uint8Input) 1 else 4
        val buffer = ByteBuffer.allocateDirect(size * size * 3 * bytesPerValue).order(ByteOrder.nativeOrder())
        for (pixel in pixels) {
            val rgb = intArrayOf((pixel shr 16) and 0xFF, (pixel shr 8) and 0xFF, pixel and 0xFF)
            for (value in rgb) {
                if (uint8Input) buffer.put(value.toByte()) else buffer.putFloat(value.toFloat())
            }
        }
        buffer.rewind()
        return buffer
    }

    private fun iou(a: FloatArray, b: FloatArray): Float {
        val w = max(0f, min(a[2], b[2]) - max(a[0], b[0]))
        val h = max(0f, min(a[3], b[3]) - max(a[1], b[1]))
        val inter = w * h
        val union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return if (union > 0f) inter / union else 0f
    }

    override fun close() = interpreter.close()
}
