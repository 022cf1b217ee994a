-- DICOMBrowser database schema, modelled on CTK's dicom-schema.sql (schema 0.8.1, used by 3D Slicer).
-- Table and column names follow CTK where they can; every difference is listed in docs/database.md.
-- DATE/TIME/DATETIME columns are VARCHAR here: SQLite gives DATE numeric affinity, which would turn
-- '20110617' into an integer and '083000' into 83000.
-- The main file is ctkDICOM.sql; the tag cache lives in a second file (ctkDICOMTagCache.sql),
-- attached to every connection as schema "tagcache".

CREATE TABLE IF NOT EXISTS SchemaInfo ( Version VARCHAR(1024) NOT NULL );

-- One row per patient. CTK identifies a patient by (PatientID, PatientsName) and rejects files where
-- both are empty; we derive PatientKey (see database.patient_key) and never reject.
CREATE TABLE IF NOT EXISTS Patients (
  UID INTEGER PRIMARY KEY AUTOINCREMENT,
  PatientsName VARCHAR(255) NULL,
  PatientID VARCHAR(255) NULL,
  PatientsBirthDate VARCHAR(8) NULL,
  PatientsBirthTime VARCHAR(20) NULL,
  PatientsSex VARCHAR(1) NULL,
  PatientsAge VARCHAR(10) NULL,
  PatientsComments VARCHAR(255) NULL,
  InsertTimestamp VARCHAR(20) NOT NULL,
  DisplayedPatientsName VARCHAR(255) NULL,
  DisplayedNumberOfStudies INT NULL,
  DisplayedLastStudyDate VARCHAR(8) NULL,
  DisplayedFieldsUpdatedTimestamp VARCHAR(20) NULL,
  -- DICOMBrowser additions
  PatientKey TEXT NOT NULL UNIQUE,   -- derived identity: PatientID + PatientName (or the study UID when both are empty)
  PatientUID TEXT NOT NULL UNIQUE,   -- stable public key "patient-<hash of PatientKey>", used by the API and CLI
  -- maintained by every write (database._refresh_counts) instead of counted per query: counting
  -- per query made listing patients grow with the whole database
  NumberOfStudies INT NOT NULL DEFAULT 0,
  NumberOfSeries INT NOT NULL DEFAULT 0,
  NumberOfInstances INT NOT NULL DEFAULT 0,
  LastStudyDate VARCHAR(8) NULL
);

CREATE TABLE IF NOT EXISTS Studies (
  StudyInstanceUID VARCHAR(64) NOT NULL,
  PatientsUID INT NOT NULL,
  StudyID VARCHAR(255) NULL,
  StudyDate VARCHAR(8) NULL,
  StudyTime VARCHAR(20) NULL,
  StudyDescription VARCHAR(255) NULL,
  AccessionNumber VARCHAR(255) NULL,
  ModalitiesInStudy VARCHAR(255) NULL,
  InstitutionName VARCHAR(255) NULL,
  ReferringPhysician VARCHAR(255) NULL,
  PerformingPhysiciansName VARCHAR(255) NULL,
  InsertTimestamp VARCHAR(20) NOT NULL,
  DisplayedNumberOfSeries INT NULL,
  DisplayedFieldsUpdatedTimestamp VARCHAR(20) NULL,
  -- DICOMBrowser additions, maintained like the patient's (ModalitiesInStudy above is CTK's, also maintained)
  NumberOfSeries INT NOT NULL DEFAULT 0,
  NumberOfInstances INT NOT NULL DEFAULT 0,
  -- copies of the patient's PatientsName, PatientID and PatientUID, kept by the triggers below: the
  -- list's order, so that a page of studies found by date sorts index entries (StudiesDateIndex2)
  -- and reads the patients of its own rows only
  PatientOrderName VARCHAR(255) NULL,
  PatientOrderID VARCHAR(255) NULL,
  PatientOrderUID TEXT NULL,
  PRIMARY KEY (StudyInstanceUID)
);

CREATE TABLE IF NOT EXISTS Series (
  SeriesInstanceUID VARCHAR(64) NOT NULL,
  StudyInstanceUID VARCHAR(64) NOT NULL,
  SeriesNumber INT NULL,
  SeriesDate VARCHAR(8) NULL,
  SeriesTime VARCHAR(20) NULL,
  SeriesDescription VARCHAR(255) NULL,
  Modality VARCHAR(20) NULL,
  BodyPartExamined VARCHAR(255) NULL,
  FrameOfReferenceUID VARCHAR(64) NULL,
  AcquisitionNumber INT NULL,
  ContrastAgent VARCHAR(255) NULL,
  ScanningSequence VARCHAR(45) NULL,
  EchoNumber INT NULL,
  TemporalPosition INT NULL,
  InsertTimestamp VARCHAR(20) NOT NULL,
  DisplayedCount INT NULL,
  DisplayedSize VARCHAR(20) NULL,
  DisplayedNumberOfFrames INT NULL,
  DisplayedFieldsUpdatedTimestamp VARCHAR(20) NULL,
  -- DICOMBrowser additions, maintained like the patient's
  NumberOfInstances INT NOT NULL DEFAULT 0,
  NumberOfFrames INT NOT NULL DEFAULT 0,  -- frames of all instances (an instance without NumberOfFrames counts 1)
  PRIMARY KEY (SeriesInstanceUID)
);

CREATE TABLE IF NOT EXISTS Images (
  SOPInstanceUID VARCHAR(64) NOT NULL,
  Filename VARCHAR(1024) NOT NULL,     -- absolute when referenced; relative to the database folder when copied
  SeriesInstanceUID VARCHAR(64) NOT NULL,
  InsertTimestamp VARCHAR(20) NOT NULL,
  DisplayedFieldsUpdatedTimestamp VARCHAR(20) NULL,
  -- DICOMBrowser additions
  SOPClassUID VARCHAR(64) NULL,
  InstanceNumber INT NULL,
  NumberOfFrames INT NULL,
  Copied INT NOT NULL DEFAULT 0,        -- 1: the file belongs to the database folder (copied in or received)
  FileSize INT NULL,
  FileMTimeNs INT NULL,                 -- st_mtime_ns when indexed; with FileSize decides "unchanged"
  TransferSyntaxUID VARCHAR(64) NULL,
  PixelDataOffset INT NULL,             -- byte offset of the Pixel Data value (for fast loading)
  PixelDataLength INT NULL,             -- its length in bytes (0xFFFFFFFF-style undefined: NULL)
  PRIMARY KEY (SOPInstanceUID)
);

-- Indexes (named *2 where an earlier schema had a narrower index of the same role). Browsing
-- lists each level in the order of these indexes, so a page is read in order and never sorted:
-- patients by name (case-insensitive), ID, key, a patient's studies by date, a study's series by
-- number. The filters users type have their own: name and descriptions (prefix and wildcard
-- matches, NOCASE as LIKE needs), patient ID, study date, accession number, modality.
CREATE UNIQUE INDEX IF NOT EXISTS ImagesFilenameIndex ON Images (Filename);
-- covering the series' counts: refreshing a series' NumberOfInstances/NumberOfFrames reads no table row
CREATE INDEX IF NOT EXISTS ImagesSeriesIndex2 ON Images (SeriesInstanceUID, NumberOfFrames);
CREATE INDEX IF NOT EXISTS SeriesStudyIndex2 ON Series (StudyInstanceUID, SeriesNumber);
CREATE INDEX IF NOT EXISTS SeriesModalityIndex ON Series (Modality COLLATE NOCASE);
CREATE INDEX IF NOT EXISTS SeriesDescriptionIndex ON Series (SeriesDescription COLLATE NOCASE);
CREATE INDEX IF NOT EXISTS StudiesPatientIndex2 ON Studies (PatientsUID, StudyDate, StudyTime);
-- a date or range, with what the list's order needs (patient, then date, time, UID) and the patient
CREATE INDEX IF NOT EXISTS StudiesDateIndex2 ON Studies (StudyDate, PatientOrderName COLLATE NOCASE,
  PatientOrderID, PatientOrderUID, StudyTime, StudyInstanceUID, PatientsUID);
CREATE INDEX IF NOT EXISTS StudiesDescriptionIndex ON Studies (StudyDescription COLLATE NOCASE);
CREATE INDEX IF NOT EXISTS StudiesAccessionIndex ON Studies (AccessionNumber);
CREATE INDEX IF NOT EXISTS PatientsNameIndex ON Patients (PatientsName COLLATE NOCASE, PatientID, PatientUID);
CREATE INDEX IF NOT EXISTS PatientsIDIndex ON Patients (PatientID);

-- The patient's order columns copied into its studies (above), whatever writes them.
CREATE TRIGGER IF NOT EXISTS StudiesPatientOrderInsert AFTER INSERT ON Studies BEGIN
  UPDATE Studies SET (PatientOrderName, PatientOrderID, PatientOrderUID) =
    (SELECT PatientsName, PatientID, PatientUID FROM Patients WHERE UID = new.PatientsUID)
    WHERE rowid = new.rowid;
END;
CREATE TRIGGER IF NOT EXISTS StudiesPatientOrderMove AFTER UPDATE OF PatientsUID ON Studies
  WHEN old.PatientsUID IS NOT new.PatientsUID BEGIN
  UPDATE Studies SET (PatientOrderName, PatientOrderID, PatientOrderUID) =
    (SELECT PatientsName, PatientID, PatientUID FROM Patients WHERE UID = new.PatientsUID)
    WHERE rowid = new.rowid;
END;
CREATE TRIGGER IF NOT EXISTS PatientsOrderCopies AFTER UPDATE OF PatientsName, PatientID, PatientUID ON Patients
  WHEN old.PatientsName IS NOT new.PatientsName OR old.PatientID IS NOT new.PatientID
    OR old.PatientUID IS NOT new.PatientUID BEGIN
  UPDATE Studies SET (PatientOrderName, PatientOrderID, PatientOrderUID) =
    (new.PatientsName, new.PatientID, new.PatientUID) WHERE PatientsUID = new.UID;
END;

-- CTK keeps the list of imported directories; we keep the table for recognisability.
CREATE TABLE IF NOT EXISTS Directories ( Dirname VARCHAR(1024), PRIMARY KEY (Dirname) );

-- DICOMBrowser addition: a counter bumped by every write transaction, so readers in any thread
-- or process can poll for changes (DICOMDatabase.data_version()).
CREATE TABLE IF NOT EXISTS Generation ( Id INTEGER PRIMARY KEY CHECK (Id = 0), Value INTEGER NOT NULL );
INSERT OR IGNORE INTO Generation VALUES (0, 0);

-- Second file: CTK's tag cache, plus a small key/value cache for examine results and thumbnails.
-- Value '' means "absent in the file" (CTK writes __TAG_NOT_IN_INSTANCE__).
CREATE TABLE IF NOT EXISTS tagcache.TagCache (
  SOPInstanceUID VARCHAR(64) NOT NULL,
  Tag VARCHAR(64) NOT NULL,
  Value VARCHAR(255),
  PRIMARY KEY (SOPInstanceUID, Tag)
) WITHOUT ROWID;
-- DICOMBrowser addition: the tags scanned at import, one packed row per instance (a JSON array of
-- values in the order of the TagSets row): 1 row instead of ~55 TagCache rows per file keeps import
-- fast. TagCache holds the tags asked for later. A tag of the instance's TagSet with no value is ''.
CREATE TABLE IF NOT EXISTS tagcache.TagSets (
  Id INTEGER PRIMARY KEY,
  Tags TEXT NOT NULL UNIQUE          -- "gggg,eeee" joined by backslashes
);
CREATE TABLE IF NOT EXISTS tagcache.InstanceTags (
  SOPInstanceUID VARCHAR(64) NOT NULL PRIMARY KEY,
  TagSetId INTEGER NOT NULL,
  Packed TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tagcache.ValueCache (
  Key TEXT NOT NULL PRIMARY KEY,
  Value TEXT
);
