/** The part of dcmjs (which ships no types) that src/imaging/toDicom.ts uses. */
declare module 'dcmjs' {
  export namespace data {
    /** A "naturalized" data set: attribute keywords to values, `_meta` for the file meta group, `_vrMap` for VRs it cannot infer. */
    type NaturalizedDataset = Record<string, unknown> & {
      _meta: Record<string, unknown>;
      _vrMap?: Record<string, string>;
    };
    /** Writes a DICOM Part 10 file (128-byte preamble, DICM, file meta in explicit VR little endian). */
    function datasetToBuffer(dataset: NaturalizedDataset): Buffer;
    namespace DicomMetaDictionary {
      /** A new UID under the 2.25 (UUID-derived) root. */
      function uid(): string;
    }
  }
}
